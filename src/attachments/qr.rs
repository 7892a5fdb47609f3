//! QR codes in images ("quishing"): a link the recipient follows with a phone, past every link
//! rewriter. Images are decoded with bounds on their size and the work per image.

/// Larger images are sampled down to this many pixels a side before the search: QR codes in mail
/// are meant to be scanned from a screen, so they are never a small part of a huge image.
const MAX_SIDE: u32 = 1600;
/// Images larger than this are not decoded at all.
const MAX_DECODED_SIDE: u32 = 8192;
const MAX_DECODE_ALLOC: u64 = 128 * 1024 * 1024;
/// Codes read per image.
const MAX_CODES: usize = 8;
/// Rows crossing something shaped like a finder pattern (dark, light, dark ×3, light, dark): a
/// code has three patterns seven modules high, so even a sheet of 20 codes stays far below.
const MAX_FINDER_ROWS: usize = 3000;

/// How many row runs look like the middle of a QR finder pattern (1:1:3:1:1), thresholding at
/// the image's mean. Linear in the pixels; what decides whether rqrr may look.
fn finder_rows(width: usize, height: usize, pixel: impl Fn(usize, usize) -> u8) -> usize {
    let mut total = 0u64;
    for y in 0..height {
        for x in 0..width {
            total += u64::from(pixel(x, y));
        }
    }
    let mean = (total / (width * height).max(1) as u64) as u8;
    let mut found = 0;
    let mut runs: Vec<usize> = Vec::with_capacity(width);
    for y in 0..height {
        runs.clear();
        let mut dark = pixel(0, y) < mean;
        let mut length = 0;
        for x in 0..width {
            let here = pixel(x, y) < mean;
            if here == dark {
                length += 1;
            } else {
                runs.push(length);
                dark = here;
                length = 1;
            }
        }
        runs.push(length);
        let first_dark = pixel(0, y) < mean;
        for start in 0..runs.len().saturating_sub(4) {
            // Only windows that begin on a dark run.
            if (start % 2 == 0) != first_dark {
                continue;
            }
            let w = &runs[start..start + 5];
            let unit = (w[0] + w[1] + w[3] + w[4]) as f64 / 4.0;
            let near = |run: usize, units: f64| (run as f64 - unit * units).abs() <= unit * 0.7;
            if unit >= 1.0
                && near(w[0], 1.0)
                && near(w[1], 1.0)
                && near(w[2], 3.0)
                && near(w[3], 1.0)
                && near(w[4], 1.0)
            {
                found += 1;
            }
        }
    }
    found
}

/// Images remembered with what they hold. A campaign sends the same picture to every recipient,
/// and fitting a QR grid costs milliseconds (rqrr's perspective search), so each distinct image is
/// decoded once; the cache is emptied when full rather than tracked per entry.
const CACHED_IMAGES: usize = 4096;

type Cache = std::sync::Mutex<std::collections::HashMap<[u8; 32], std::sync::Arc<Vec<String>>>>;

fn cache() -> &'static Cache {
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The text of every QR code found in `image` (PNG, JPEG or GIF bytes).
pub fn decode(image: &[u8]) -> Vec<String> {
    use sha2::Digest;
    let digest: [u8; 32] = sha2::Sha256::digest(image).into();
    if let Some(known) = cache().lock().ok().and_then(|cache| cache.get(&digest).cloned()) {
        return known.as_ref().clone();
    }
    let found = decode_uncached(image);
    if let Ok(mut cache) = cache().lock() {
        if cache.len() >= CACHED_IMAGES {
            cache.clear();
        }
        cache.insert(digest, std::sync::Arc::new(found.clone()));
    }
    found
}

pub(super) fn forget() {
    if let Ok(mut cache) = cache().lock() {
        cache.clear();
    }
}

fn decode_uncached(image: &[u8]) -> Vec<String> {
    let Ok(reader) = image::ImageReader::new(std::io::Cursor::new(image)).with_guessed_format() else {
        return Vec::new();
    };
    let mut reader = reader;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_DECODED_SIDE);
    limits.max_image_height = Some(MAX_DECODED_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let Ok(decoded) = reader.decode() else {
        return Vec::new();
    };
    let grey = decoded.to_luma8();
    let (width, height) = grey.dimensions();
    if width < 21 || height < 21 {
        return Vec::new();
    }
    let step = width.max(height).div_ceil(MAX_SIDE).max(1);
    let (sampled_width, sampled_height) = ((width / step) as usize, (height / step) as usize);
    let pixel = |x: usize, y: usize| grey.get_pixel(x as u32 * step, y as u32 * step).0[0];
    // rqrr pairs every finder pattern with every other (cubic in their number): an image tiled
    // with them would take minutes. Real codes have three each.
    if finder_rows(sampled_width, sampled_height, pixel) > MAX_FINDER_ROWS {
        return Vec::new();
    }
    let mut prepared = rqrr::PreparedImage::prepare_from_greyscale(sampled_width, sampled_height, pixel);
    prepared
        .detect_grids()
        .into_iter()
        .take(MAX_CODES)
        .filter_map(|grid| grid.decode().ok().map(|(_, text)| text))
        .collect()
}

/// The link a QR code's text holds: a URL, a bare `www.` address, or the `URL:` of a bookmark
/// (`MEBKM:URL:…;`) or a contact card.
pub fn url_in(text: &str) -> Option<String> {
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let start = ["https://", "http://"]
        .iter()
        .filter_map(|scheme| lower.find(scheme))
        .min();
    let candidate = match start {
        Some(at) => &trimmed[at..],
        None if lower.starts_with("www.") => return Some(format!("https://{}", first_token(trimmed))),
        None => return None,
    };
    let url = first_token(candidate);
    url::Url::parse(url).ok().map(|_| url.to_string())
}

fn first_token(text: &str) -> &str {
    text.split(|c: char| c.is_whitespace() || c == ';' || c == '"' || c == '<' || c == '>')
        .next()
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_qr_texts() {
        assert_eq!(url_in("https://a.test/x?y=1").as_deref(), Some("https://a.test/x?y=1"));
        assert_eq!(
            url_in("MEBKM:TITLE:x;URL:http://b.test/;;").as_deref(),
            Some("http://b.test/")
        );
        assert_eq!(url_in("www.c.test/login").as_deref(), Some("https://www.c.test/login"));
        assert_eq!(url_in("WIFI:S:home;T:WPA;P:secret;;"), None);
    }

    #[test]
    fn a_sheet_of_finder_patterns_is_refused_quickly() {
        // 7×7 finder patterns, 9 pixels a module, tiled edge to edge.
        let module = |x: usize, y: usize| {
            let (mx, my) = ((x / 9) % 8, (y / 9) % 8);
            if mx == 7 || my == 7 {
                return 255;
            }
            let ring = mx.min(my).min(6 - mx).min(6 - my);
            if ring == 1 { 255 } else { 0 }
        };
        let rows = finder_rows(1600, 1600, module);
        assert!(rows > MAX_FINDER_ROWS, "{rows}");
        let started = std::time::Instant::now();
        let mut png = Vec::new();
        let image = image::GrayImage::from_fn(1600, 1600, |x, y| image::Luma([module(x as usize, y as usize)]));
        image
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        assert!(decode(&png).is_empty());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn not_images_decode_to_nothing() {
        assert!(decode(b"not an image").is_empty());
        assert!(decode(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\x7f\xff\xff\xff\x7f\xff\xff\xff").is_empty());
    }
}
