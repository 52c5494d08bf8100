//! Starting the service: the CPU path it is told to use (`--cpu`), or its refusal to start.
//!
//! Load, disconnects, timeouts and shutdown are `tests/api/robustness.rs`'s (see the note at the top of `main.rs`).

use icnr_upscale::server::ServeArgs;

use crate::helpers::*;

/// `--cpu` / `ICNR_UPSCALE_CPU`: an unknown name, or a path this CPU lacks, stops the service from starting with an
/// error that lists the valid names (never a silent downgrade); every path this CPU has, `avx512-novbmi` included
/// on an AVX-512 machine, starts and upscales.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cpu_path_is_forced_or_the_service_refuses_to_start() {
    use icnr_upscale::cpu_names;
    use icnr_upscale::engine::{Options, PATH_NAMES};

    let refusal = |cpu: &str| {
        let args = ServeArgs { cpu: cpu.to_owned(), ..args() };
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let res = tokio::time::timeout(
                std::time::Duration::from_secs(60),
                icnr_upscale::server::run(args, listener, std::future::pending::<()>()),
            )
            .await
            .expect("run() refuses at once instead of serving");
            format!("{:#}", res.expect_err("run() must refuse this --cpu"))
        }
    };
    let e = refusal("avx1024").await;
    for name in cpu_names() {
        assert!(e.contains(name), "{e} lacks {name}");
    }
    // No CPU has every path (NEON is aarch64's, AVX2 and AVX-512 x86-64's).
    let lacking = PATH_NAMES.into_iter().find(|n| !Options::forced(n).unwrap().is_supported()).unwrap();
    let e = refusal(lacking).await;
    assert!(e.contains(&format!("cannot run the {lacking} path")) && e.contains("valid names here: auto"), "{e}");

    for opts in Options::every_supported() {
        let app = TestServer::start(ServeArgs { cpu: opts.path_name().to_owned(), ..args() }).await;
        let res = app.post_raw("?scale=2", "image/png", png(&rgb8(9, 7))).await;
        assert_eq!(res.status(), 200, "--cpu {}", opts.path_name());
        assert_eq!(decode_png(&res.bytes().await.unwrap()).to_rgb8().dimensions(), (18, 14));
        app.shutdown().await.unwrap();
    }
}
