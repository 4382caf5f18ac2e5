//! The drivers shipped in `drivers/`, and installing what each needs on
//! first use, under `target/drivers/`: redis-py, pinned in
//! `drivers/redis-py/requirements.txt`, into a virtual environment;
//! node-redis, pinned in `drivers/node-redis/package.json`, with npm.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use tokio::process::Command;

/// The drivers this repository ships, by the name `MAINT_E2E_CLIENT` takes.
pub const DRIVERS: [&str; 2] = ["redis-py", "node-redis"];

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
        "node-redis" => node_driver("node-redis").await,
        other => bail!(
            "there is no driver {other:?}; the drivers are {} (or leave MAINT_E2E_CLIENT unset for the suite's own client)",
            DRIVERS.join(", ")
        ),
    }
}

/// A Python driver in `drivers/<name>`: a virtual environment named after
/// its pinned requirements, made once.
async fn python_driver(name: &str) -> Result<Launch> {
    let Pinned {
        dir,
        pins_file: requirements,
        pins,
        install: venv,
    } = pinned(name, "requirements.txt")?;
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

/// A Node.js driver in `drivers/<name>`: its `package.json` (the client
/// pinned) installed once with npm into a folder named after it; the
/// driver's script is copied beside its `node_modules` at every start.
async fn node_driver(name: &str) -> Result<Launch> {
    let Pinned {
        dir,
        pins_file: manifest,
        install,
        ..
    } = pinned(name, "package.json")?;
    if !install.join("node_modules").exists() {
        let _guard = INSTALLING.lock().await;
        if !install.join("node_modules").exists() {
            let building = PathBuf::from(format!(
                "{}.building-{}",
                install.display(),
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&building);
            std::fs::create_dir_all(&building)?;
            std::fs::copy(&manifest, building.join("package.json"))?;
            run(
                Command::new("npm")
                    .args(["install", "--no-audit", "--no-fund", "--omit=dev", "--silent"])
                    .current_dir(&building),
                "npm install (the node-redis driver needs Node.js 20 or newer and npm; the npm registry must be reachable)",
            )
            .await
            .with_context(|| format!("installing the {name} driver"))?;
            std::fs::rename(&building, &install).or_else(|e| {
                if install.exists() {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
        }
    }
    // Copied aside, then moved into place whole: drivers that start at the
    // same moment never read a half-written script.
    static COPIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let aside = install.join(format!("driver.mjs.{}-{n}", std::process::id()));
    let script = install.join("driver.mjs");
    std::fs::copy(dir.join("driver.mjs"), &aside)
        .and_then(|_| std::fs::rename(&aside, &script))
        .with_context(|| format!("copying the {name} driver's script"))?;
    Ok(Launch {
        program: "node".into(),
        args: vec![script.display().to_string()],
    })
}

/// A driver's folder, the file that pins its client, that file's text, and
/// where it is installed (named after the pins: a new pin, a new install).
struct Pinned {
    dir: PathBuf,
    pins_file: PathBuf,
    pins: String,
    install: PathBuf,
}

fn pinned(name: &str, pins_file: &str) -> Result<Pinned> {
    let dir = root().join("drivers").join(name);
    let pins_file = dir.join(pins_file);
    let pins = std::fs::read_to_string(&pins_file)
        .with_context(|| format!("reading {}", pins_file.display()))?;
    let install = root()
        .join("target")
        .join("drivers")
        .join(format!("{name}-{:016x}", fingerprint(&pins)));
    Ok(Pinned {
        dir,
        pins_file,
        pins,
        install,
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
