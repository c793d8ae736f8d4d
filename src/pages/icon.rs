//! The pages' icon: a small QR-like mark in the pages' green, drawn from one grid both
//! as SVG (`/favicon.svg`, what the pages link) and as a 32×32 PNG inside an ICO file
//! (`/favicon.ico`, what a browser asks for by itself). Made once, on first use.

use std::sync::LazyLock;

/// The mark, a cell per character (`#` filled): three finder squares like a QR code's,
/// and a few data cells.
const GRID: [&str; 8] = [
    "###..###", //
    "#.#.#.##", //
    "###..###", //
    "..#.#...", //
    "##..#.#.", //
    "###.##.#", //
    "#.#..##.", //
    "###.#.##",
];

/// The pages' `--brand` green (style.css).
const GREEN: [u8; 3] = [0x06, 0x7a, 0x3c];

/// Cells of margin around the grid.
const MARGIN: usize = 1;

fn filled() -> impl Iterator<Item = (usize, usize)> {
    GRID.iter()
        .enumerate()
        .flat_map(|(y, row)| row.bytes().enumerate().filter(|(_, b)| *b == b'#').map(move |(x, _)| (x, y)))
}

pub static SVG: LazyLock<String> = LazyLock::new(|| {
    let side = GRID.len() + 2 * MARGIN;
    let cells: String = filled().map(|(x, y)| format!("M{} {}h1v1h-1z", x + MARGIN, y + MARGIN)).collect();
    let [r, g, b] = GREEN;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {side} {side}\">\
         <rect width=\"{side}\" height=\"{side}\" rx=\"2\" fill=\"#fff\"/>\
         <path fill=\"#{r:02x}{g:02x}{b:02x}\" d=\"{cells}\"/></svg>"
    )
});

/// Pixels per cell of the PNG; with the margin the picture is 32 × 32 pixels.
const CELL: u32 = 3;
pub const ICO_SIDE: u32 = 32;

pub static ICO: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let offset = (ICO_SIDE - CELL * GRID.len() as u32) / 2;
    let mut img = image::RgbaImage::from_pixel(ICO_SIDE, ICO_SIDE, image::Rgba([255, 255, 255, 255]));
    for (x, y) in filled() {
        for dy in 0..CELL {
            for dx in 0..CELL {
                let (px, py) = (offset + x as u32 * CELL + dx, offset + y as u32 * CELL + dy);
                img.put_pixel(px, py, image::Rgba([GREEN[0], GREEN[1], GREEN[2], 255]));
            }
        }
    }
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).expect("a PNG in memory");
    ico_of_png(&png.into_inner(), ICO_SIDE)
});

/// An ICO file of one PNG picture `side` pixels square (the ICO format since Windows
/// Vista; every browser reads it): the 6-byte header, one 16-byte entry, the PNG.
fn ico_of_png(png: &[u8], side: u32) -> Vec<u8> {
    const HEADER: u32 = 6 + 16;
    let mut out = Vec::with_capacity(HEADER as usize + png.len());
    out.extend_from_slice(&[0, 0, 1, 0, 1, 0]); // reserved, type 1 (icon), one picture
    // Width and height (one byte each, 0 meaning 256), no palette, reserved.
    out.extend_from_slice(&[side as u8, side as u8, 0, 0]);
    out.extend_from_slice(&1u16.to_le_bytes()); // colour planes
    out.extend_from_slice(&32u16.to_le_bytes()); // bits per pixel
    out.extend_from_slice(&(png.len() as u32).to_le_bytes());
    out.extend_from_slice(&HEADER.to_le_bytes());
    out.extend_from_slice(png);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_is_square() {
        assert!(GRID.iter().all(|row| row.len() == GRID.len()));
        assert!(CELL * GRID.len() as u32 <= ICO_SIDE);
    }

    #[test]
    fn the_ico_holds_one_32_pixel_png_of_the_mark() {
        let ico = &*ICO;
        assert_eq!(&ico[..6], &[0, 0, 1, 0, 1, 0]);
        assert_eq!((ico[6], ico[7]), (32, 32));
        let len = u32::from_le_bytes(ico[14..18].try_into().unwrap()) as usize;
        let offset = u32::from_le_bytes(ico[18..22].try_into().unwrap()) as usize;
        assert_eq!((offset, offset + len), (22, ico.len()));
        let png = image::load_from_memory_with_format(&ico[offset..], image::ImageFormat::Png).unwrap().to_rgba8();
        assert_eq!(png.dimensions(), (32, 32));
        // The top-left finder square's corner is green, the margin white.
        assert_eq!(png.get_pixel(4, 4).0, [GREEN[0], GREEN[1], GREEN[2], 255]);
        assert_eq!(png.get_pixel(0, 0).0, [255, 255, 255, 255]);
    }

    #[test]
    fn the_svg_draws_every_filled_cell() {
        let svg = &*SVG;
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\"") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches('z').count(), filled().count());
        assert!(svg.contains("fill=\"#067a3c\""));
    }
}
