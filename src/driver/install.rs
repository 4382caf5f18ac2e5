//! The drivers shipped in `drivers/`, and installing what each needs on
//! first use: redis-py, pinned in `drivers/redis-py/requirements.txt`, into
//! a virtual environment under `target/drivers/`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use tokio::process::Command;

/// The drivers this repository ships, by the name `MAINT_E2E_CLIENT` takes.
pub const DRIVERS: [&str; 1] = ["redis-py"];

/// How to start a driver: a program and its arguments.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The program.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
}

/// The repository's root (where `drivers/` is).
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Installs what driver `name` needs, when it is not installed yet, and
/// says how to start it.
pub async fn prepare(name: &str) -> Result<Launch> {
    match name {
        "redis-py" => python_driver("redis-py").await,
        other => bail!(
            "there is no driver {other:?}; the drivers are {} (or leave MAINT_E2E_CLIENT unset for the suite's own client)",
            DRIVERS.join(", ")
        ),
    }
}

/// A Python driver in `drivers/<name>`: a virtual environment named after
/// its pinned requirements, made once.
async fn python_driver(name: &str) -> Result<Launch> {
    let dir = root().join("drivers").join(name);
    let requirements = dir.join("requirements.txt");
    let pins = std::fs::read_to_string(&requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let venv = root()
        .join("target")
        .join("drivers")
        .join(format!("{name}-{:016x}", fingerprint(&pins)));
    let python = venv.join("bin").join("python");
    if !python.exists() {
        let _guard = INSTALLING.lock().await;
        if !python.exists() {
            make_venv(&venv, &requirements)
                .await
                .with_context(|| format!("installing the {name} driver ({})", pins.trim()))?;
        }
    }
    Ok(Launch {
        program: python.display().to_string(),
        args: vec![dir.join("driver.py").display().to_string()],
    })
}

/// One installation at a time in this process.
static INSTALLING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Makes a virtual environment at `venv` with `requirements`, built beside
/// it and moved into place whole (a half-made one is never used).
async fn make_venv(venv: &Path, requirements: &Path) -> Result<()> {
    let building = PathBuf::from(format!(
        "{}.building-{}",
        venv.display(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&building);
    std::fs::create_dir_all(building.parent().unwrap())?;
    run(
        Command::new("python3").arg("-m").arg("venv").arg(&building),
        "python3 -m venv (the driver needs Python 3 with venv; on Debian: apt-get install python3 python3-venv)",
    )
    .await?;
    run(
        Command::new(building.join("bin").join("python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(requirements),
        "pip install (PyPI must be reachable, or a mirror set in PIP_INDEX_URL)",
    )
    .await?;
    // Its python finds its packages wherever the directory is (its own
    // scripts' first lines would not, and are not used).
    std::fs::rename(&building, venv)
        .or_else(|e| if venv.exists() { Ok(()) } else { Err(e) })
        .with_context(|| format!("moving the new environment to {}", venv.display()))
}

async fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .output()
        .await
        .map_err(|e| anyhow!("{what}: could not start it: {e}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// FNV-1a of `text`: names an installation after what it pins.
fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
