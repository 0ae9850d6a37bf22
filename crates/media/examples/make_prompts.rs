//! Writes Hotline's demo prompts (synthetic, made by the project) into a directory:
//! `cargo run -p hotline-media --example make_prompts -- config/prompts`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "prompts".to_string());
    for p in hotline_media::prompts::write_demo_prompts(std::path::Path::new(&dir))? {
        println!("{}", p.display());
    }
    Ok(())
}
