//! The game in a real window: under Xvfb (Mesa's software renderer), with three bots, it saves a
//! screenshot through Bevy, and the picture must show the arena with every player in it, not a
//! blank or single-colour frame. Needs `xvfb-run` (Debian: xvfb xauth, plus mesa-vulkan-drivers);
//! without it the test says so and passes (CI installs it).
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use arena::protocol::PALETTE;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Pixels whose colour is a shade of `c` (as a multiply tint of the light body makes it).
fn shade_pixels(img: &image::RgbaImage, c: [f32; 3]) -> usize {
    let sum = c[0] + c[1] + c[2];
    let chroma = [c[0] / sum, c[1] / sum, c[2] / sum];
    img.pixels()
        .filter(|p| {
            let [r, g, b] = [p[0], p[1], p[2]].map(|v| v as f32 / 255.0);
            let s = r + g + b;
            if s < 0.9 {
                return false;
            }
            let d =
                (r / s - chroma[0]).abs() + (g / s - chroma[1]).abs() + (b / s - chroma[2]).abs();
            d < 0.06
        })
        .count()
}

#[test]
fn the_window_shows_the_arena_and_its_players() {
    if Command::new("xvfb-run").arg("--help").output().is_err() {
        eprintln!(
            "skipped: xvfb-run is not installed (apt-get install xvfb xauth mesa-vulkan-drivers)"
        );
        return;
    }
    let shot: PathBuf =
        std::env::temp_dir().join(format!("arena-window-{}.png", std::process::id()));
    let _ = std::fs::remove_file(&shot);
    let port = free_port().to_string();
    let out = Command::new("timeout")
        .args(["240", "xvfb-run", "-a", "-s", "-screen 0 1280x820x24"])
        .arg(env!("CARGO_BIN_EXE_arena"))
        .args([
            "--port", &port, "--bots", "3", "--name", "Tester", "--color", "0",
        ])
        .args(["--exit-after", "12", "--screenshot"])
        .arg(&shot)
        .env("WGPU_BACKEND", "vulkan,gl")
        .output()
        .expect("run the game under xvfb-run");
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the game failed: {}\n{log}",
        out.status
    );
    assert!(log.contains("started the embedded arena server"), "{log}");
    let img = image::open(&shot)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{log}", shot.display()))
        .to_rgba8();
    assert!(
        img.width() >= 640 && img.height() >= 400,
        "{}x{}",
        img.width(),
        img.height()
    );

    // Not blank: many distinct colours (floor, walls, sprites, text).
    let mut colours: Vec<[u8; 3]> = img
        .pixels()
        .map(|p| [p[0] & 0xf8, p[1] & 0xf8, p[2] & 0xf8])
        .collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(
        colours.len() > 200,
        "only {} colours: a blank frame?",
        colours.len()
    );

    // Every player is drawn: the tester (colour 0) and the three bots (colours 3, 4, 5) each
    // cover hundreds of pixels (a name in the online list alone is far fewer).
    for c in [0usize, 3, 4, 5] {
        let n = shade_pixels(&img, PALETTE[c]);
        assert!(
            n > 300,
            "colour {c} covers only {n} pixels: player missing?\n{log}"
        );
    }
    std::thread::sleep(Duration::from_millis(10));
    let _ = std::fs::remove_file(&shot);
}
