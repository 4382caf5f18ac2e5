//! Opening the report in headless Chromium, as a reader would: the page must
//! load without a script error and draw every timeline its data holds (the
//! page checks itself and leaves its verdict on `<body data-check>`), and one
//! scenario's timeline can be kept as a PNG.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use serde::Deserialize;

/// Names the browser to use instead of looking on `PATH`.
pub const CHROMIUM_ENV: &str = "MAINT_E2E_CHROMIUM";

/// How long the browser may take to load, run and print the page.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

/// A headless Chromium.
pub struct Chromium {
    path: PathBuf,
}

/// What the page said about itself.
#[derive(Debug, Default, Deserialize)]
pub struct Check {
    /// Scenarios with a timeline in the report's data.
    pub timelines: usize,
    /// Of those, timelines drawn in full.
    pub drawn: usize,
    /// What was not drawn as the data says.
    pub problems: Vec<String>,
    /// Script errors the page recorded or the browser logged.
    #[serde(default)]
    pub errors: Vec<String>,
}

impl Chromium {
    /// The browser [`CHROMIUM_ENV`] names, or the first of `chromium`,
    /// `chromium-browser`, `google-chrome` on `PATH`.
    pub fn find() -> Result<Self> {
        Self::find_in(std::env::var_os(CHROMIUM_ENV), std::env::var_os("PATH"))
    }

    /// [`Chromium::find`] on explicit values of the two variables.
    fn find_in(
        named: Option<std::ffi::OsString>,
        path: Option<std::ffi::OsString>,
    ) -> Result<Self> {
        if let Some(p) = named.filter(|p| !p.is_empty()) {
            let path = PathBuf::from(p);
            if !path.is_file() {
                bail!(
                    "{CHROMIUM_ENV}={} is not a file: point it at a Chromium binary, or unset it",
                    path.display()
                );
            }
            return Ok(Chromium { path });
        }
        let dirs = path.unwrap_or_default();
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            if let Some(path) = std::env::split_paths(&dirs)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
            {
                return Ok(Chromium { path });
            }
        }
        bail!(
            "no Chromium found on PATH: install it (`apt-get install chromium` on Debian) \
             or name one with {CHROMIUM_ENV}"
        )
    }

    async fn run(&self, page_url: &str, extra: &[String]) -> Result<std::process::Output> {
        let profile = tempfile::tempdir().context("making a profile folder for Chromium")?;
        let mut cmd = tokio::process::Command::new(&self.path);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(page_url)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
        let out = tokio::time::timeout(BROWSER_TIMEOUT, cmd.output())
            .await
            .map_err(|_| anyhow!("Chromium took over {BROWSER_TIMEOUT:?} on {page_url}"))?
            .with_context(|| format!("starting {}", self.path.display()))?;
        if !out.status.success() {
            bail!(
                "{} exited with {} on {page_url}: {}",
                self.path.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out)
    }

    /// Loads `page` and returns what it said about itself, with the script
    /// errors it recorded and those the browser logged.
    pub async fn check(&self, page: &Path) -> Result<Check> {
        let url = file_url(page)?;
        let out = self.run(&url, &["--dump-dom".into()]).await?;
        let dom = String::from_utf8_lossy(&out.stdout);
        let mut check: Check = match attribute(&dom, "data-check") {
            Some(json) => serde_json::from_str(&json)
                .with_context(|| format!("reading the page's self-check {json:?}"))?,
            None => Check {
                errors: vec!["the page's script never ran to its end (no data-check)".into()],
                ..Check::default()
            },
        };
        if let Some(json) = attribute(&dom, "data-errors") {
            let recorded: Vec<String> = serde_json::from_str(&json).unwrap_or(vec![json]);
            check.errors.extend(recorded);
        }
        check.errors.extend(
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .filter(|l| l.contains("CONSOLE") && l.contains("Uncaught"))
                .map(str::to_string),
        );
        Ok(check)
    }

    /// Saves a PNG of the timeline of scenario `anchor` alone, `height` CSS
    /// pixels tall.
    pub async fn screenshot(
        &self,
        page: &Path,
        anchor: &str,
        height: u32,
        png: &Path,
    ) -> Result<()> {
        let url = format!("{}#focus={anchor}", file_url(page)?);
        self.screenshot_url(&url, height, png).await
    }

    /// Saves a PNG of the page at `url`, 1280 by `height` CSS pixels.
    async fn screenshot_url(&self, url: &str, height: u32, png: &Path) -> Result<()> {
        if let Some(dir) = png.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let png = std::path::absolute(png)?;
        self.run(
            url,
            &[
                format!("--screenshot={}", png.display()),
                format!("--window-size=1280,{height}"),
            ],
        )
        .await?;
        if !png.is_file() {
            bail!("Chromium wrote no screenshot at {}", png.display());
        }
        Ok(())
    }
}

/// Opens `page` in headless Chromium and fails unless it loaded without a
/// script error and drew every timeline; with `screenshot` (a scenario's id,
/// `CH1`, or its anchor, and a PNG path), saves that scenario's timeline.
/// The report's JSON is read from `report.json` beside the page.
pub async fn verify_page(page: &Path, screenshot: Option<(&str, &Path)>) -> Result<Check> {
    let chromium = Chromium::find()?;
    let check = chromium.check(page).await?;
    if !check.errors.is_empty() {
        bail!("{} has script errors: {:?}", page.display(), check.errors);
    }
    if !check.problems.is_empty() || check.drawn != check.timelines {
        bail!(
            "{} drew {} of {} timelines: {:?}",
            page.display(),
            check.drawn,
            check.timelines,
            check.problems
        );
    }
    if let Some((wanted, png)) = screenshot {
        let json = page.with_file_name("report.json");
        let run: super::Run = serde_json::from_slice(
            &std::fs::read(&json).with_context(|| format!("reading {}", json.display()))?,
        )
        .with_context(|| format!("reading {}", json.display()))?;
        let (_, s) = run
            .scenarios()
            .find(|(_, s)| s.id == wanted || s.anchor == wanted)
            .ok_or_else(|| {
                anyhow!(
                    "no scenario {wanted:?} in {}; its scenarios: {}",
                    json.display(),
                    run.scenarios()
                        .map(|(_, s)| if s.id.is_empty() {
                            s.anchor.clone()
                        } else {
                            s.id.clone()
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        let height = super::html::focus_height(&run, &s.anchor)
            .ok_or_else(|| anyhow!("scenario {wanted:?} has no timeline (it got no World)"))?;
        chromium.screenshot(page, &s.anchor, height, png).await?;
    }
    Ok(check)
}

/// Opens the conformance matrix `page` in headless Chromium and fails unless
/// it loaded without a script error and drew its `cells` cells, each with a
/// known state; with `screenshot` (a PNG path and a height), saves the page.
pub async fn verify_matrix(
    page: &Path,
    cells: usize,
    screenshot: Option<(&Path, u32)>,
) -> Result<Check> {
    let chromium = Chromium::find()?;
    let check = chromium.check(page).await?;
    if !check.errors.is_empty() {
        bail!("{} has script errors: {:?}", page.display(), check.errors);
    }
    if !check.problems.is_empty() || check.drawn != cells || check.timelines != cells {
        bail!(
            "{} drew {} of {} cells (the page expected {}): {:?}",
            page.display(),
            check.drawn,
            cells,
            check.timelines,
            check.problems
        );
    }
    if let Some((png, height)) = screenshot {
        // Its `#ran` view: the rows a client through a driver ran.
        let url = format!("{}#ran", file_url(page)?);
        chromium.screenshot_url(&url, height, png).await?;
    }
    Ok(check)
}

/// `file://` URL of `page`.
fn file_url(page: &Path) -> Result<String> {
    let abs = std::path::absolute(page)?;
    if !abs.is_file() {
        bail!(
            "no report at {}: run the acceptance suite first",
            abs.display()
        );
    }
    Ok(url::Url::from_file_path(&abs)
        .map_err(|()| anyhow!("{} cannot be a file URL", abs.display()))?
        .to_string())
}

/// The value of the first `name="..."` attribute in `html`, unescaped.
fn attribute(html: &str, name: &str) -> Option<String> {
    let start = html.find(&format!("{name}=\""))? + name.len() + 2;
    let end = start + html[start..].find('"')?;
    Some(
        html[start..end]
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#39;", "'")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_misnamed_browser_says_how_to_get_one() {
        let err = Chromium::find_in(Some("/no/such/chromium".into()), None)
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            "MAINT_E2E_CHROMIUM=/no/such/chromium is not a file: point it at a Chromium binary, or unset it"
        );
        let err = Chromium::find_in(None, Some("/nonexistent".into()))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with(
                "no Chromium found on PATH: install it (`apt-get install chromium` on Debian)"
            ),
            "{err}"
        );
    }

    #[test]
    fn an_attribute_is_read_back_unescaped() {
        let html = r#"<body class="x" data-check="{&quot;a&quot;:&quot;&lt;b&gt; &amp; c&quot;}">"#;
        assert_eq!(
            attribute(html, "data-check").as_deref(),
            Some(r#"{"a":"<b> & c"}"#)
        );
        assert_eq!(attribute(html, "data-errors"), None);
    }
}
