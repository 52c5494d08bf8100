fn main() {
    std::process::exit(icnr_upscale::cli::main());
}
