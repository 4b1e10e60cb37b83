//! `plantd config check FILE`.

use std::path::Path;

use anyhow::Context;

use crate::config::PlantConfig;

pub fn run(file: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading config file {}", file.display()))?;
    let mut c = PlantConfig::parse(&file.display().to_string(), &text)?;
    c.read_files(&file.display().to_string(), &text)?;
    println!("{}: ok", file.display());
    println!("  data_dir      {}", c.data_dir.display());
    println!("  api.listen    {}", c.api.listen);
    if let Some(p) = c.api.listen_plain {
        println!("  api.listen_plain {p} (plain HTTP, no TLS)");
    }
    println!(
        "  journal       retention {}, commit {:?}",
        humantime::format_duration(c.journal.retention),
        c.journal.commit
    );
    match &c.stack {
        None => println!("  stack         not supervised (no [stack] section)"),
        Some(s) => println!(
            "  stack         {} ({:?} images), ingress {}",
            s.name,
            s.images,
            s.ingress.map_or("off".to_string(), |a| a.to_string())
        ),
    }
    Ok(())
}
