//! A new attempt's scene in its bucket (run by hand, not in CI):
//!
//! ```sh
//! cargo bench --bench scenes            # 200k scenes each way
//! N=20000 cargo bench --bench scenes    # a quick look
//! ```
//!
//! Every QR create on the cluster engine needs a random scene in the bucket of its poll
//! id (`engine::cluster`). Side by side, on the same random buckets: the baseline draws
//! whole scenes until one falls in the bucket (about 256 draws), `Scene::generate_in`
//! steers the last character (about 4 draws of the rest), and a plain
//! `Scene::generate` (no bucket) is the floor. Prints µs per scene and the ratios.

// Bench code: a failed unwrap is how it fails.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use scanlogin::ids::Scene;

/// The baseline: whole scenes drawn until one lands in `b`.
fn drawn_until_in(b: u8) -> Scene {
    loop {
        let s = Scene::generate();
        if s.bucket() == b {
            return s;
        }
    }
}

/// µs per scene of `make` over `buckets`, checking each lands where asked.
fn per_scene(buckets: &[u8], make: impl Fn(u8) -> Scene) -> f64 {
    let start = Instant::now();
    for &b in buckets {
        assert_eq!(black_box(make(b)).bucket(), b);
    }
    start.elapsed().as_secs_f64() * 1e6 / buckets.len() as f64
}

fn main() {
    let n: usize = std::env::var("N").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let buckets: Vec<u8> = (0..n).map(|_| Scene::generate().bucket()).collect();
    let start = Instant::now();
    for _ in 0..n {
        black_box(Scene::generate());
    }
    let floor = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    let steered = per_scene(&buckets, Scene::generate_in);
    let baseline = per_scene(&buckets, drawn_until_in);
    println!("scenes in a bucket, {n} each way (µs per scene)");
    println!("  baseline: whole scenes drawn until one lands   {baseline:>8.2}");
    println!("  Scene::generate_in (last character steered)    {steered:>8.2}");
    println!("  floor: Scene::generate, any bucket             {floor:>8.2}");
    println!("  baseline / generate_in: {:.1}×;  generate_in / floor: {:.1}×", baseline / steered, steered / floor);
}
