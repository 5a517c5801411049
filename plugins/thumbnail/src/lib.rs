//! Task type `thumbnail:make`: a PNG thumbnail of an image.
//!
//! Real work on real data, with the `image` crate. Payload:
//!
//! ```json
//! {"width": 64, "height": 64, "image": "<base64 PNG or JPEG>"}
//! {"width": 64, "generate": {"width": 1024, "height": 768}}
//! ```
//!
//! `height` is optional (the aspect ratio is kept within `width` x
//! `height`). Instead of `image`, `generate` renders a Mandelbrot picture of
//! that size first, so demos and benchmarks need no input files. The result
//! holds the thumbnail as base64 PNG with its size.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use image::{DynamicImage, ImageFormat, RgbImage, imageops::FilterType};
use serde::{Deserialize, Serialize};
use wasmq_guest::{Failure, Handler, Task};

/// The largest picture `generate` will render, in pixels.
const MAX_GENERATED_PIXELS: u64 = 16_000_000;

#[derive(Deserialize)]
struct Params {
    width: u32,
    height: Option<u32>,
    image: Option<String>,
    generate: Option<Generate>,
}

#[derive(Deserialize)]
struct Generate {
    width: u32,
    height: u32,
}

#[derive(Serialize)]
struct Thumbnail {
    width: u32,
    height: u32,
    source_width: u32,
    source_height: u32,
    png_bytes: usize,
    png_base64: String,
}

struct Thumbnailer;

impl Handler for Thumbnailer {
    type Payload = Params;
    type Output = Thumbnail;

    fn handle(_task: &Task, params: Params) -> Result<Thumbnail, Failure> {
        if params.width == 0 || params.height == Some(0) {
            return Err(Failure::give_up(
                "the thumbnail's width and height must be at least 1",
            ));
        }
        let source = match (&params.image, &params.generate) {
            (Some(encoded), None) => decode(encoded)?,
            (None, Some(size)) => mandelbrot(size)?,
            _ => {
                return Err(Failure::give_up(
                    "give exactly one of `image` (base64 PNG or JPEG) or `generate` ({\"width\", \"height\"})",
                ));
            }
        };
        let thumbnail = source.resize(
            params.width,
            params.height.unwrap_or(params.width),
            FilterType::Triangle,
        );
        let mut png = std::io::Cursor::new(Vec::new());
        thumbnail
            .write_to(&mut png, ImageFormat::Png)
            .map_err(|err| {
                Failure::give_up(format!("encoding the thumbnail as PNG failed: {err}"))
            })?;
        let png = png.into_inner();
        wasmq_guest::debug!(
            "thumbnail {}x{} from {}x{}",
            thumbnail.width(),
            thumbnail.height(),
            source.width(),
            source.height()
        );
        Ok(Thumbnail {
            width: thumbnail.width(),
            height: thumbnail.height(),
            source_width: source.width(),
            source_height: source.height(),
            png_bytes: png.len(),
            png_base64: BASE64.encode(&png),
        })
    }
}

/// Decodes a base64 PNG or JPEG.
fn decode(encoded: &str) -> Result<DynamicImage, Failure> {
    let bytes = BASE64
        .decode(encoded.trim())
        .map_err(|err| Failure::give_up(format!("`image` is not valid base64: {err}")))?;
    image::load_from_memory(&bytes).map_err(|err| {
        Failure::give_up(format!(
            "`image` is not a PNG or JPEG this plugin can read: {err}"
        ))
    })
}

/// Renders the Mandelbrot set into a picture of the requested size.
fn mandelbrot(size: &Generate) -> Result<DynamicImage, Failure> {
    let pixels = u64::from(size.width) * u64::from(size.height);
    if pixels == 0 || pixels > MAX_GENERATED_PIXELS {
        return Err(Failure::give_up(format!(
            "`generate` must be between 1 and {MAX_GENERATED_PIXELS} pixels, not {}x{}",
            size.width, size.height
        )));
    }
    let picture = RgbImage::from_fn(size.width, size.height, |x, y| {
        let cx = -2.2 + 3.2 * f64::from(x) / f64::from(size.width);
        let cy = -1.2 + 2.4 * f64::from(y) / f64::from(size.height);
        let (mut zx, mut zy, mut n) = (0.0f64, 0.0f64, 0u32);
        while n < 64 && zx * zx + zy * zy < 4.0 {
            let next = zx * zx - zy * zy + cx;
            zy = 2.0 * zx * zy + cy;
            zx = next;
            n += 1;
        }
        let shade = (n * 4).min(255) as u8;
        image::Rgb([shade, shade / 2, 255 - shade])
    });
    Ok(DynamicImage::ImageRgb8(picture))
}

wasmq_guest::plugin! {
    handler: Thumbnailer,
    name: "thumbnail",
    task_types: ["thumbnail:make"],
}
