"""cellmap-data's ``utils``: array-spec helpers, world boxes, multiscale metadata and batch
figures."""

from .figs import fig_to_image, get_fig_dict, get_image_dict, get_image_grid, get_image_grid_numpy
from .geometry import box_intersection, box_shape, box_union
from .metadata import (
    add_multiscale_metadata_levels,
    create_multiscale_metadata,
    find_level,
    generate_base_multiscales_metadata,
    write_metadata,
)
from .misc import (
    array_has_singleton_dim,
    expand_scale,
    get_sliced_shape,
    is_array_2D,
    longest_common_substring,
    min_redundant_inds,
    permute_singleton_dimension,
    split_target_path,
    torch_max_value,
)

__all__ = [
    "add_multiscale_metadata_levels",
    "array_has_singleton_dim",
    "box_intersection",
    "box_shape",
    "box_union",
    "create_multiscale_metadata",
    "expand_scale",
    "fig_to_image",
    "find_level",
    "generate_base_multiscales_metadata",
    "get_fig_dict",
    "get_image_dict",
    "get_image_grid",
    "get_image_grid_numpy",
    "get_sliced_shape",
    "is_array_2D",
    "longest_common_substring",
    "min_redundant_inds",
    "permute_singleton_dimension",
    "split_target_path",
    "torch_max_value",
    "write_metadata",
]
