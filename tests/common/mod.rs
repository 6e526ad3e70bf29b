//! Helpers for end-to-end tests: the real binary, real models.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The models directory: `DOCENT_TEST_MODELS`, else `./models` in the
/// workspace (fill it with `scripts/fetch-models.sh`).
pub fn models_dir() -> PathBuf {
    let dir = std::env::var_os("DOCENT_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
    assert!(
        dir.join("SmolLM2-135M-Instruct.Q4_1.gguf").is_file(),
        "models missing in {}: run scripts/fetch-models.sh",
        dir.display()
    );
    dir
}

fn command(data: &Path, extra_env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_docent"));
    cmd.env("DOCENT__STORAGE__DATA_DIR", data)
        .env("DOCENT__MODELS__DIR", models_dir())
        .env("DOCENT__SERVER__MAX_UPLOAD_MB", "1")
        .env("DOCENT_LOG", "info,mistralrs_core=error,qdrant_edge=error,ort=warn")
        .env_remove("DOCENT_CONFIG");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd
}

/// A `docent` command on a data directory with extra environment (output
/// captured by the caller).
pub fn command_with(data: &Path, extra_env: &[(&str, &str)]) -> Command {
    command(data, extra_env)
}

/// Runs a one-shot `docent` command against a data directory.
pub fn docent(data: &Path, args: &[&str]) -> std::process::Output {
    command(data, &[])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run docent")
}

pub struct Server {
    child: Child,
    pub base: String,
    pub client: reqwest::Client,
    data: PathBuf,
}

impl Server {
    /// Starts `docent serve --port 0` and waits for its address.
    pub async fn start(data: &Path, extra_env: &[(&str, &str)]) -> Self {
        let mut child = command(data, extra_env)
            .args(["serve", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn docent serve");
        let stdout = child.stdout.take().expect("stdout");
        let base = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let line = line.expect("read stdout");
                if let Some(addr) = line.strip_prefix("docent listening on ") {
                    // Keep draining stdout so the server never blocks on it.
                    std::thread::spawn(move || for _ in lines {});
                    return addr.trim().to_owned();
                }
            }
            panic!("docent serve exited before listening");
        })
        .await
        .expect("join");
        Self {
            child,
            base,
            client: reqwest::Client::new(),
            data: data.to_path_buf(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// GET a path and parse the JSON body.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET request")
            .json()
            .await
            .expect("JSON body")
    }

    /// Uploads one file as multipart `file`.
    pub async fn upload(&self, name: &str, bytes: Vec<u8>, mime: &str) -> reqwest::Response {
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(name.to_owned())
            .mime_str(mime)
            .expect("mime");
        let form = reqwest::multipart::Form::new().part("file", part);
        self.client
            .post(self.url("/v1/documents"))
            .multipart(form)
            .send()
            .await
            .expect("upload request")
    }

    /// Polls a job until it is ready (panics if it fails or never finishes).
    pub async fn wait_ready(&self, job_id: &str) -> serde_json::Value {
        for _ in 0..600 {
            let job = self.get_json(&format!("/v1/jobs/{job_id}")).await;
            match job["status"].as_str() {
                Some("ready") => return job,
                Some("failed") => panic!("ingest failed: {job}"),
                _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
        panic!("job {job_id} did not finish");
    }

    /// Uploads a file, waits until it is searchable and returns its id.
    pub async fn ingest(&self, name: &str, bytes: Vec<u8>, mime: &str) -> String {
        let r = self.upload(name, bytes, mime).await;
        assert_eq!(r.status(), 202, "upload of {name}");
        let body: serde_json::Value = r.json().await.expect("upload json");
        let job = body["job_id"].as_str().expect("job_id").to_owned();
        self.wait_ready(&job).await;
        body["id"].as_str().expect("document id").to_owned()
    }

    /// `POST /v1/search`, the hits.
    pub async fn search(&self, query: &str, mode: &str) -> Vec<serde_json::Value> {
        let r: serde_json::Value = self
            .client
            .post(self.url("/v1/search"))
            .json(&serde_json::json!({"query": query, "k": 10, "mode": mode}))
            .send()
            .await
            .expect("search request")
            .json()
            .await
            .expect("search json");
        r["hits"].as_array().cloned().unwrap_or_default()
    }

    /// `POST /v1/chat` with this body, every SSE event.
    pub async fn chat(&self, body: serde_json::Value) -> Vec<(String, serde_json::Value)> {
        let resp = self
            .client
            .post(self.url("/v1/chat"))
            .json(&body)
            .send()
            .await
            .expect("chat request");
        assert_eq!(resp.status(), 200);
        read_sse(resp).await
    }

    /// The value of an unlabelled series in `/metrics`.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics request")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Kills the process (no graceful shutdown) and starts a new one on the
    /// same data directory.
    pub async fn restart(mut self, extra_env: &[(&str, &str)]) -> Self {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let data = self.data.clone();
        Self::start(&data, extra_env).await
    }
}

impl Server {
    /// Sends SIGTERM (what an orchestrator sends) and waits for the exit.
    pub async fn terminate(mut self, within: std::time::Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}");
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "docent did not exit within {within:?} of SIGTERM"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh PostgreSQL database for one test, dropped by `drop_db`.
/// The server comes from `DOCENT_TEST_POSTGRES_URL` (an admin URL), else
/// the local one `scripts/ensure-postgres.sh` starts.
pub struct PgDb {
    admin: sqlx::AnyPool,
    pub name: String,
    pub url: String,
}

impl PgDb {
    pub async fn create() -> Self {
        let admin_url = std::env::var("DOCENT_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        sqlx::any::install_default_drivers();
        let admin = sqlx::AnyPool::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} is required (scripts/ensure-postgres.sh): {e}"));
        let name = format!("docent_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create database");
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .expect("admin url has a path");
        let url = format!("{base}/{name}");
        Self { admin, name, url }
    }

    pub async fn drop_db(self) {
        sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .execute(&self.admin)
            .await
            .expect("drop database");
    }
}

/// A three-page clinic guide; the quarantine fact is only on page 2.
pub const CLINIC_PAGE1: &[&str] = &[
    "Northwind Clinic visitor guide.",
    "Visitors sign in at the front desk and wear a badge at all times.",
    "Flowers are not allowed in the intensive care unit.",
];
pub const CLINIC_PAGE2: &[&str] = &[
    "Infection control.",
    "The quarantine period for Zorblax fever is eleven days.",
    "Patients with Zorblax fever stay in the east isolation wing.",
];
pub const CLINIC_PAGE3: &[&str] = &[
    "Billing questions.",
    "Invoices are sent by post within thirty days of discharge.",
];

/// The text of the `token` events.
pub fn streamed_text(events: &[(String, serde_json::Value)]) -> String {
    events
        .iter()
        .filter(|(e, _)| e == "token")
        .filter_map(|(_, d)| d["text"].as_str())
        .collect()
}

/// The data of the first event named `name`.
pub fn event<'a>(events: &'a [(String, serde_json::Value)], name: &str) -> Option<&'a serde_json::Value> {
    events.iter().find(|(e, _)| e == name).map(|(_, d)| d)
}

/// Reads a whole SSE response into (event, data) pairs.
pub async fn read_sse(resp: reqwest::Response) -> Vec<(String, serde_json::Value)> {
    use futures::StreamExt;
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk.expect("sse chunk")));
        while let Some(i) = buf.find("\n\n") {
            let frame: String = buf.drain(..i + 2).collect();
            let mut event = "message".to_owned();
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            out.push((event, serde_json::from_str(&data).expect("sse json")));
        }
    }
    out
}

/// A PDF with one page per entry, each line a text line (Helvetica).
pub fn make_pdf(pages: &[&[&str]]) -> Vec<u8> {
    use lopdf::content::{Content, Operation};
    use lopdf::{dictionary, Document, Object, Stream};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding",
    });
    let resources_id = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font_id } });
    let mut kids: Vec<Object> = Vec::new();
    for lines in pages {
        let mut ops = vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 12.into()]),
            Operation::new("TL", vec![14.into()]),
            Operation::new("Td", vec![72.into(), 770.into()]),
        ];
        for l in *lines {
            ops.push(Operation::new("Tj", vec![Object::string_literal(*l)]));
            ops.push(Operation::new("T*", vec![]));
        }
        ops.push(Operation::new("ET", vec![]));
        let content = Content { operations: ops }.encode().expect("encode content");
        let content_id = doc.add_object(Stream::new(dictionary! {}, content));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content_id, "Resources" => resources_id,
        });
        kids.push(page_id.into());
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => kids, "Count" => count,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    doc.compress();
    let mut buf = Vec::new();
    doc.save_to(&mut buf).expect("save pdf");
    buf
}

/// A DOCX whose word/document.xml body is `body` (WordprocessingML).
pub fn make_docx(body: &str) -> Vec<u8> {
    use std::io::Write;
    let doc = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>"#
    );
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        z.start_file("[Content_Types].xml", opts).expect("zip");
        z.write_all(b"<Types/>").expect("zip");
        z.start_file("word/document.xml", opts).expect("zip");
        z.write_all(doc.as_bytes()).expect("zip");
        z.finish().expect("zip");
    }
    out.into_inner()
}

/// A WordprocessingML paragraph, optionally with a style id.
pub fn docx_p(style: Option<&str>, text: &str) -> String {
    let ppr = style
        .map(|s| format!(r#"<w:pPr><w:pStyle w:val="{s}"/></w:pPr>"#))
        .unwrap_or_default();
    format!(r#"<w:p>{ppr}<w:r><w:t xml:space="preserve">{text}</w:t></w:r></w:p>"#)
}

/// A WordprocessingML table, one row per entry.
pub fn docx_table(rows: &[&[&str]]) -> String {
    let mut t = String::from("<w:tbl>");
    for r in rows {
        t.push_str("<w:tr>");
        for c in *r {
            t.push_str(&format!("<w:tc>{}</w:tc>", docx_p(None, c)));
        }
        t.push_str("</w:tr>");
    }
    t.push_str("</w:tbl>");
    t
}

/// Runs a poppler/tesseract tool; these are installed by scripts/ensure-tools.sh.
pub fn tool(name: &str) -> std::process::Command {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(found, "{name} is not installed: scripts/ensure-tools.sh installs it");
    std::process::Command::new(name)
}

/// Renders page 1 of a PDF to an 8-bit grey image: (width, height, pixels).
pub fn render_gray(pdf: &[u8], dpi: u32) -> (u32, u32, Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.pdf");
    std::fs::write(&input, pdf).expect("write pdf");
    let out = dir.path().join("page");
    let status = tool("pdftoppm")
        .args(["-gray", "-singlefile", "-r", &dpi.to_string()])
        .arg(&input)
        .arg(&out)
        .status()
        .expect("pdftoppm");
    assert!(status.success());
    let pgm = std::fs::read(out.with_extension("pgm")).expect("read pgm");
    // Binary PGM: "P5" width height maxval, then one byte per pixel.
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while pgm[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while !pgm[i].is_ascii_whitespace() {
            i += 1;
        }
        fields.push(String::from_utf8_lossy(&pgm[start..i]).into_owned());
    }
    assert_eq!(fields[0], "P5");
    let (w, h): (u32, u32) = (fields[1].parse().expect("w"), fields[2].parse().expect("h"));
    let pixels = pgm[i + 1..].to_vec();
    assert_eq!(pixels.len(), (w * h) as usize);
    (w, h, pixels)
}

/// A one-page PDF holding only an image of the given grey pixels: what a
/// scanner produces (no text layer).
pub fn make_scanned_pdf(w: u32, h: u32, pixels: Vec<u8>, dpi: u32) -> Vec<u8> {
    use lopdf::{dictionary, Document, Object, Stream};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let mut image = Stream::new(
        dictionary! {
            "Type" => "XObject", "Subtype" => "Image", "Width" => i64::from(w), "Height" => i64::from(h),
            "ColorSpace" => "DeviceGray", "BitsPerComponent" => 8,
        },
        pixels,
    );
    image.compress().expect("compress");
    let image_id = doc.add_object(image);
    let (pw, ph) = (w as f32 * 72.0 / dpi as f32, h as f32 * 72.0 / dpi as f32);
    let content = format!("q {pw} 0 0 {ph} 0 0 cm /Im0 Do Q");
    let content_id = doc.add_object(Stream::new(dictionary! {}, content.into_bytes()));
    let page_id = doc.add_object(dictionary! {
        "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
        "Resources" => dictionary! { "XObject" => dictionary! { "Im0" => image_id } },
        "MediaBox" => vec![0.into(), 0.into(), Object::Real(pw), Object::Real(ph)],
    });
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1 }),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    let mut buf = Vec::new();
    doc.save_to(&mut buf).expect("save pdf");
    buf
}

/// PNG bytes of page 1 of a PDF.
pub fn render_png(pdf: &[u8], dpi: u32) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.pdf");
    std::fs::write(&input, pdf).expect("write pdf");
    let out = dir.path().join("page");
    let status = tool("pdftoppm")
        .args(["-png", "-singlefile", "-r", &dpi.to_string()])
        .arg(&input)
        .arg(&out)
        .status()
        .expect("pdftoppm");
    assert!(status.success());
    std::fs::read(out.with_extension("png")).expect("read png")
}
