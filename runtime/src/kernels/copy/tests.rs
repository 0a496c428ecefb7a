use super::*;

/// Region copy of `src` at `lo` of a chunk of `dims` into `dest` with the given geometry.
fn region(
    src: &[u16],
    dims: [usize; 3],
    lo: [usize; 3],
    extent: [usize; 3],
    base: isize,
    strides: [isize; 3],
    dest: &mut [f32],
) -> bool {
    let mut dest = StridedDest {
        data: dest,
        base,
        strides,
        shape: extent,
    };
    copy_generic(src, ChunkBox { dims, lo }, &mut dest, |d, x| *d = f32::from(x))
}

/// The region copy equals a voxel-by-voxel reference for every axis permutation and flip of
/// the destination (the transposed ones take the tiled path).
#[test]
fn region_copy_matches_the_reference_for_every_permutation_and_flip() {
    let chunk = [37usize, 29, 41];
    let src: Vec<u16> = (0..chunk.iter().product::<usize>())
        .map(|v| (v * 7 % 65521) as u16)
        .collect();
    let src_lo = [3usize, 2, 5];
    let extent = [33usize, 19, 35];
    let perms = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
    let mut checked = 0;
    for perm in perms {
        for flips in 0..8u32 {
            // Destination axis `perm[a]` holds source axis `a`; a flipped axis runs backwards.
            let mut dims = [0usize; 3];
            for a in 0..3 {
                dims[perm[a]] = extent[a];
            }
            let dest_strides_by_axis = [(dims[1] * dims[2]) as isize, dims[2] as isize, 1];
            let mut strides = [0isize; 3];
            let mut base = 0isize;
            for a in 0..3 {
                let s = dest_strides_by_axis[perm[a]];
                if flips & (1 << a) != 0 {
                    strides[a] = -s;
                    base += (extent[a] as isize - 1) * s;
                } else {
                    strides[a] = s;
                }
            }
            let n: usize = extent.iter().product();
            let mut got = vec![-1.0f32; n];
            assert!(region(&src, chunk, src_lo, extent, base, strides, &mut got));
            let mut want = vec![-1.0f32; n];
            for i in 0..extent[0] {
                for j in 0..extent[1] {
                    for k in 0..extent[2] {
                        let s = ((src_lo[0] + i) * chunk[1] + src_lo[1] + j) * chunk[2] + src_lo[2] + k;
                        let d = base + i as isize * strides[0] + j as isize * strides[1] + k as isize * strides[2];
                        want[d as usize] = f32::from(src[s]);
                    }
                }
            }
            assert!(want.iter().all(|v| *v >= 0.0));
            assert_eq!(got, want, "perm {perm:?} flips {flips:03b}");
            checked += 1;
        }
    }
    assert_eq!(checked, 48);
    // No axis with a unit stride (every other element of a buffer twice the size): tiles.
    let strides = [(2 * extent[1] * extent[2]) as isize, 2 * extent[2] as isize, 2];
    let n: usize = extent.iter().product();
    let mut got = vec![-1.0f32; 2 * n];
    assert!(region(&src, chunk, src_lo, extent, 1, strides, &mut got));
    for i in 0..extent[0] {
        for j in 0..extent[1] {
            for k in 0..extent[2] {
                let s = ((src_lo[0] + i) * chunk[1] + src_lo[1] + j) * chunk[2] + src_lo[2] + k;
                let d = 1 + i as isize * strides[0] + j as isize * strides[1] + k as isize * strides[2];
                assert_eq!(got[d as usize], f32::from(src[s]));
                assert_eq!(got[d as usize - 1], -1.0);
            }
        }
    }
    // An out-of-range destination is refused, not a panic.
    let mut short = vec![0f32; 100];
    assert!(!region(
        &src,
        chunk,
        src_lo,
        extent,
        0,
        [1, 33, 33 * 19 + 1],
        &mut short
    ));
}
