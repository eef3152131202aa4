//! Builds the guest image into the directory given as the first argument and prints it.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: build_image CACHE_DIR")?;
    let img = nosplit_vmrt::image::build_guest(std::path::Path::new(&dir))?;
    println!(
        "{}\n{}\n{}",
        img.kernel.display(),
        img.initrd.display(),
        img.kernel_version
    );
    Ok(())
}
