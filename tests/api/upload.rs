//! Uploads that must succeed: raw and multipart, every input format, bit depth, alpha and ICC kept.

use icnr_upscale::engine::{Options, Upscaler};
use icnr_upscale::imageio::{self, Compression, DecodeLimits};
use icnr_upscale::kernel::{Init, Initializer, Kernel, KernelParams};
use image::{ColorType, GenericImageView, ImageFormat};

use crate::helpers::*;

/// What the library itself produces for `input` with `params`: the service must answer exactly these bytes.
fn library_png(input: &[u8], params: &KernelParams, compression: Compression) -> (Vec<u8>, f64) {
    let kernel = Kernel::generate(params).unwrap();
    let limits = DecodeLimits { max_input_pixels: u64::MAX, max_output_pixels: u64::MAX, scale: params.scale };
    let decoded = imageio::decode(input, &limits).unwrap();
    let up = Upscaler::from_kernel(&kernel, Options::default()).unwrap();
    let mut out = Vec::new();
    let stats =
        imageio::upscale_to_png(&mut out, &up, &decoded.image, decoded.icc_profile.as_deref(), compression, &|| false)
            .unwrap();
    (out, stats.score)
}

/// A raw PNG upload with default parameters gives a PNG twice the size, byte for byte what the library makes,
/// with the library's checkerboard score in `X-Checkerboard-Score` and a fresh `X-Request-Id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_png_upload_gives_the_library_output() {
    let app = spawn_app().await;
    let input = png(&rgb8(37, 23));
    // The generated kernel (the library call below); without init parameters the default trained model runs.
    let res = app.post_raw("?init=icnr", "image/png", input.clone()).await;
    assert_eq!(res.status(), 200);
    let headers = res.headers().clone();
    assert_eq!(headers["content-type"], "image/png");
    let id = headers["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    let score: f64 = headers["x-checkerboard-score"].to_str().unwrap().parse().unwrap();
    let body = res.bytes().await.unwrap().to_vec();

    let (expected, expected_score) = library_png(&input, &KernelParams::default(), Compression::Fast);
    assert_eq!(body, expected, "service output differs from the library's");
    assert_eq!(score, expected_score);
    assert_eq!(decode_png(&body).dimensions(), (74, 46));
    app.shutdown().await.unwrap();
}

/// Every query parameter reaches the engine: the answer equals the library's output for the same parameters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_parameters_reach_the_engine() {
    let app = spawn_app().await;
    let input = png(&rgb8(20, 15));
    let params = KernelParams {
        scale: 3,
        kernel_size: 5,
        init: Init::Plain,
        initializer: Initializer::XavierUniform,
        seed: 12_345_678_901_234,
    };
    let query = "?scale=3&kernel_size=5&init=plain&initializer=xavier_uniform&seed=12345678901234&compression=best";
    let res = app.post_raw(query, "application/octet-stream", input.clone()).await;
    assert_eq!(res.status(), 200);
    let body = res.bytes().await.unwrap().to_vec();
    assert_eq!(body, library_png(&input, &params, Compression::Best).0);
    assert_eq!(decode_png(&body).dimensions(), (60, 45));

    // init=default shows the checkerboard: a positive score.
    let res = app.post_raw("?init=default&seed=3", "image/png", input).await;
    let score: f64 = res.headers()["x-checkerboard-score"].to_str().unwrap().parse().unwrap();
    assert!(score > 0.0, "{score}");
    app.shutdown().await.unwrap();
}

/// Multipart with only the `image` field gives the same bytes as the raw upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_equals_raw_upload() {
    let app = spawn_app().await;
    let input = png(&rgba8(16, 9));
    let raw = app.post_raw("?scale=2", "image/png", input.clone()).await;
    assert_eq!(raw.status(), 200);
    let raw = raw.bytes().await.unwrap();
    let mp = app.post_multipart("?scale=2", input, None).await;
    assert_eq!(mp.status(), 200);
    assert_eq!(mp.headers()["content-type"], "image/png");
    assert_eq!(mp.bytes().await.unwrap(), raw);
    app.shutdown().await.unwrap();
}

/// PNG, JPEG, WebP, GIF, BMP and TIFF made here with the image crate are all accepted, raw and multipart, whatever
/// `image/*` type the client claims (the format is sniffed from the bytes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_input_format_is_accepted() {
    let app = spawn_app().await;
    let img = rgb8(24, 17);
    let rgba = rgba8(24, 17);
    let cases = [
        ("png", encode(&img, ImageFormat::Png), "image/png"),
        ("jpeg", encode(&img, ImageFormat::Jpeg), "image/jpeg"),
        ("webp", encode(&img, ImageFormat::WebP), "image/webp"),
        ("gif", encode(&rgba, ImageFormat::Gif), "image/gif"),
        ("bmp", encode(&img, ImageFormat::Bmp), "image/bmp"),
        ("tiff", encode(&img, ImageFormat::Tiff), "image/tiff"),
        ("png as octet-stream", encode(&img, ImageFormat::Png), "application/octet-stream"),
        ("jpeg claimed as png", encode(&img, ImageFormat::Jpeg), "image/png"),
    ];
    for (name, bytes, ct) in cases {
        let res = app.post_raw("", ct, bytes.clone()).await;
        assert_eq!(res.status(), 200, "{name}: {}", res.text().await.unwrap());
        assert_eq!(decode_png(&res.bytes().await.unwrap()).dimensions(), (48, 34), "{name}");
        let res = app.post_multipart("", bytes, None).await;
        assert_eq!(res.status(), 200, "{name} multipart");
    }
    app.shutdown().await.unwrap();
}

/// 16-bit input gives 16-bit output, alpha is kept, grayscale becomes RGB, and an ICC profile is carried over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bit_depth_alpha_and_icc_are_kept() {
    let app = spawn_app().await;
    let cases = [
        ("rgb8", rgb8(11, 7), ColorType::Rgb8),
        ("rgba8", rgba8(11, 7), ColorType::Rgba8),
        ("rgba16", rgba16(11, 7), ColorType::Rgba16),
        ("gray16", gray16(11, 7), ColorType::Rgb16),
        ("gray-alpha8", image::DynamicImage::ImageLumaA8(rgba8(11, 7).to_luma_alpha8()), ColorType::Rgba8),
    ];
    for (name, img, want) in cases {
        let input = png(&img);
        let res = app.post_raw("?init=icnr", "image/png", input.clone()).await;
        assert_eq!(res.status(), 200, "{name}");
        let body = res.bytes().await.unwrap().to_vec();
        let out = decode_png(&body);
        assert_eq!(out.color(), want, "{name}");
        assert_eq!(out.dimensions(), (22, 14), "{name}");
        assert_eq!(body, library_png(&input, &KernelParams::default(), Compression::Fast).0, "{name}");
    }
    // Alpha is upscaled nearest-neighbour (never convolved): each output alpha equals its source pixel's alpha.
    let src = rgba16(11, 7);
    let res = app.post_raw("?init=default", "image/png", png(&src)).await;
    let out = decode_png(&res.bytes().await.unwrap()).to_rgba16();
    let src = src.to_rgba16();
    for (x, y, p) in out.enumerate_pixels() {
        assert_eq!(p[3], src.get_pixel(x / 2, y / 2)[3], "alpha at {x},{y}");
    }

    // The ICC profile goes through unchanged. Only its header's colour space matters to the service (the output is
    // RGB, so only an `RGB ` profile may be written into it); the other bytes are filler.
    let mut icc: Vec<u8> = (0..600u32).map(|i| (i * 7 % 251) as u8).collect();
    icc[16..20].copy_from_slice(b"RGB ");
    let res = app.post_raw("", "image/png", png_with_icc(&rgb8(8, 8), &icc)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(png_icc(&res.bytes().await.unwrap()), Some(icc));
    let res = app.post_raw("", "image/png", png(&rgb8(8, 8))).await;
    assert_eq!(png_icc(&res.bytes().await.unwrap()), None);
    app.shutdown().await.unwrap();
}

/// A sane caller `X-Request-Id` is echoed; an odd one is replaced by a UUID. Errors carry it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_kept_when_sane() {
    let app = spawn_app().await;
    for (path, sent, kept) in [
        ("/healthz", "abc.DEF-123_x", true),
        ("/nope", "trace-42", true),
        ("/healthz", "has spaces in it", false),
        ("/healthz", &"x".repeat(65), false),
        ("/upscale?scale=1", "bad/slash", false),
    ] {
        let res = app.client.get(app.url(path)).header("x-request-id", sent.as_bytes()).send().await.unwrap();
        let got = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        if kept {
            assert_eq!(got, sent, "{path}");
        } else {
            assert_ne!(got, sent);
            assert!(uuid::Uuid::parse_str(&got).is_ok(), "{got}");
        }
    }
    app.shutdown().await.unwrap();
}

/// `GET /healthz` is 200 `{"status":"ok"}` as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_ok() {
    let app = spawn_app().await;
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.text().await.unwrap(), r#"{"status":"ok"}"#);
    app.shutdown().await.unwrap();
}

/// Concurrent requests each get their own pixels, not only a 200: twelve requests in flight at once (three job slots,
/// the rest queued), each with its own image (size, RGB/RGBA, 8/16-bit), scale, init and seed, are each answered
/// with exactly the library's PNG for that request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_get_their_own_pixels() {
    use icnr_upscale::kernel::{Init, Initializer};
    let app = TestServer::start(icnr_upscale::server::ServeArgs { max_concurrent_jobs: 3, ..args() }).await;
    let mut tasks = Vec::new();
    for i in 0..12u32 {
        let img = match i % 3 {
            0 => rgb8(17 + i, 11 + 2 * i),
            1 => rgba8(23 + 2 * i, 9 + i),
            _ => rgba16(13 + i, 19 + i),
        };
        let init = [Init::Icnr, Init::Default, Init::Plain][(i / 3 % 3) as usize];
        let params = KernelParams {
            scale: 2 + i % 4,
            kernel_size: 1 + 2 * (i % 3),
            init,
            initializer: Initializer::KaimingNormal,
            seed: 100 + i as u64,
        };
        let query = format!(
            "?scale={}&kernel_size={}&init={}&seed={}",
            params.scale,
            params.kernel_size,
            init.name(),
            params.seed
        );
        let input = png(&img);
        let (client, url) = (app.client.clone(), app.url(&format!("/upscale{query}")));
        tasks.push(tokio::spawn(async move {
            let res =
                client.post(url).header("content-type", "image/png").body(input.clone()).send().await.expect("POST");
            let status = res.status().as_u16();
            (i, query, input, params, status, res.bytes().await.expect("body").to_vec())
        }));
    }
    for t in tasks {
        let (i, query, input, params, status, body) = t.await.expect("task");
        assert_eq!(status, 200, "request {i} {query}: {}", String::from_utf8_lossy(&body));
        assert!(body == library_png(&input, &params, Compression::Fast).0, "request {i} {query}: not its own pixels");
    }
    app.shutdown().await.unwrap();
}
