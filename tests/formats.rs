//! Every supported format through the real pipeline (real embedder, SQLite,
//! qdrant-edge, tantivy): DOCX, HTML, CSV and e-mail with an attachment,
//! plus scanned pages and images through offline OCR (tesseract).

mod common;

use docent::app::Components;
use docent::config::Config;
use docent_core::{AccessFilter, DocStatus, Document, Principal, SearchHit};
use docent_ingest::extract::{detect, extract_with, Limits, OcrMode};
use docent_ingest::pipeline::{NewDocument, Submitted};
use docent_retrieve::search::Mode;

async fn ingest(c: &Components, name: &str, bytes: Vec<u8>) -> Document {
    let noop = |_: uuid::Uuid, _: DocStatus, _: f32| {};
    let sub = c
        .ingestor
        .submit(NewDocument {
            bytes,
            file_name: name.into(),
            source: format!("/shares/{name}"),
            collection: "default".into(),
            access: vec!["everyone".into()],
            title: None,
            tags: Vec::new(),
            date: None,
        })
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let Submitted::Queued { doc, job } = sub else {
        panic!("{name} should be new");
    };
    c.ingestor
        .run(job.id, doc.id, &noop)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

async fn search(c: &Components, query: &str, mode: Mode) -> Vec<SearchHit> {
    let f = AccessFilter::for_principal(&Principal::default_user());
    c.searcher.search(query, &f, 10, mode).await.expect("search").hits
}

async fn top(c: &Components, query: &str) -> SearchHit {
    search(c, query, Mode::Hybrid)
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no hit for {query:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn office_formats_and_email_through_the_pipeline() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut cfg = Config::default();
    cfg.storage.data_dir = data.path().to_path_buf();
    cfg.models.dir = common::models_dir();
    let c = Components::build(&cfg).await.expect("components");

    // DOCX: headings become the heading path; a table comes out row by row.
    let docx = common::make_docx(
        &[
            common::docx_p(Some("Title"), "Infection Control Manual"),
            common::docx_p(Some("Heading1"), "Hand hygiene"),
            common::docx_p(None, "Wash hands for twenty seconds before touching a patient."),
            common::docx_p(Some("Heading2"), "Hand rub dosing"),
            common::docx_table(&[&["Product", "Dose"], &["Alcohol rub", "3 ml per application"]]),
        ]
        .concat(),
    );
    let d = ingest(&c, "manual.docx", docx).await;
    assert_eq!(d.status, DocStatus::Ready);
    assert_eq!(d.title, "Infection Control Manual");
    let hit = top(&c, "alcohol rub dose per application").await;
    assert_eq!(hit.document.id, d.id);
    assert_eq!(hit.chunk.heading_path, vec!["Hand hygiene", "Hand rub dosing"]);
    assert!(
        hit.chunk.text.contains("Alcohol rub | 3 ml per application"),
        "{}",
        hit.chunk.text
    );

    // HTML: text with headings; scripts and styles never reach the index.
    let html = r#"<!doctype html><html><head><title>Ward Seven Rota</title>
        <script>var zqxjkv = "tracking pixel";</script><style>.zqxjkv{}</style></head>
        <body><h1>Rota</h1><h2>Night shift</h2><p>The night shift starts at 22:00 and ends at 07:00.</p>
        <table><tr><th>Nurse</th><th>Bay</th></tr><tr><td>Okafor</td><td>Bay 3</td></tr></table></body></html>"#;
    let h = ingest(&c, "rota.html", html.as_bytes().to_vec()).await;
    assert_eq!(h.title, "Ward Seven Rota");
    let hit = top(&c, "when does the night shift start").await;
    assert_eq!(hit.document.id, h.id);
    assert_eq!(hit.chunk.heading_path, vec!["Rota", "Night shift"]);
    assert!(
        search(&c, "zqxjkv", Mode::Bm25).await.is_empty(),
        "script text was indexed"
    );

    // CSV: each row a record that names its columns.
    let csv = "drug,dose,route\nHeparin,5000 IU,subcutaneous\nAmoxicillin,500 mg,oral\n";
    let s = ingest(&c, "formulary.csv", csv.as_bytes().to_vec()).await;
    let hit = top(&c, "heparin dose route").await;
    assert_eq!(hit.document.id, s.id);
    assert!(
        hit.chunk
            .text
            .contains("drug: Heparin; dose: 5000 IU; route: subcutaneous"),
        "{}",
        hit.chunk.text
    );

    // E-mail: headers and body; the attachment is a child document.
    let attachment = common::make_docx(&common::docx_p(
        None,
        "Quarantine protocol: isolate the patient in a negative pressure room for fourteen days.",
    ));
    let b64 = base64_encode(&attachment);
    let eml = format!(
        "From: Infection Control <ic@example.org>\r\nTo: all-wards@example.org\r\nSubject: Updated isolation guidance\r\nDate: Tue, 3 Mar 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease read the attached protocol before your next shift.\r\n--B\r\nContent-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document; name=\"protocol.docx\"\r\nContent-Disposition: attachment; filename=\"protocol.docx\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--B--\r\n"
    );
    let m = ingest(&c, "guidance.eml", eml.into_bytes()).await;
    assert_eq!(m.title, "Updated isolation guidance");
    let children = c.store.children_of(m.id).await.expect("children");
    assert_eq!(children.len(), 1, "{children:?}");
    assert_eq!(children[0].status, DocStatus::Ready);
    assert_eq!(children[0].kind.as_str(), "docx");
    assert_eq!(children[0].parent_id, Some(m.id));
    let hit = top(&c, "negative pressure room quarantine").await;
    assert_eq!(hit.document.id, children[0].id);
    let hit = top(&c, "updated isolation guidance from infection control").await;
    assert_eq!(hit.document.id, m.id);
    assert!(
        hit.chunk.text.contains("From: Infection Control <ic@example.org>"),
        "{}",
        hit.chunk.text
    );

    // Deleting the e-mail deletes its attachment everywhere.
    assert!(c.ingestor.delete(m.id).await.expect("delete"));
    assert!(c.store.get_document(children[0].id).await.expect("get").is_none());
    for mode in [Mode::Bm25, Mode::Dense, Mode::Hybrid] {
        assert!(
            search(&c, "negative pressure room quarantine", mode)
                .await
                .iter()
                .all(|h| h.document.id != children[0].id && h.document.id != m.id),
            "deleted attachment still found ({mode:?})"
        );
    }

    // Content decides the type: a name that disagrees is refused, and
    // nothing is stored.
    let before = c.store.documents_in_collection("default").await.expect("docs").len();
    for (name, bytes) in [
        ("manual.pdf", common::make_docx(&common::docx_p(None, "x"))),
        ("rota.docx", html.as_bytes().to_vec()),
        ("scan.png", b"%PDF-1.4 not an image".to_vec()),
        ("notes.eml", b"just some words, no headers".to_vec()),
    ] {
        let err = c
            .ingestor
            .submit(NewDocument {
                bytes,
                file_name: name.into(),
                source: name.into(),
                collection: "default".into(),
                access: vec!["everyone".into()],
                title: None,
                tags: Vec::new(),
                date: None,
            })
            .await
            .expect_err(name);
        assert_eq!(err.code(), "type_mismatch", "{name}: {err}");
    }
    assert_eq!(
        c.store.documents_in_collection("default").await.expect("docs").len(),
        before
    );
}

fn base64_encode(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(3).enumerate() {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(A[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
        if i % 19 == 18 {
            out.push_str("\r\n");
        }
    }
    out
}

const SCANNED: &[&str] = &[
    "Discharge checklist for cardiology patients",
    "Confirm the follow-up appointment with the clinic",
    "Explain the new medication schedule to the family",
];

fn words_found(text: &str) -> usize {
    let text = text.to_lowercase();
    let wanted: Vec<String> = SCANNED
        .iter()
        .flat_map(|l| l.split_whitespace())
        .map(str::to_lowercase)
        .collect();
    let found = wanted.iter().filter(|w| text.contains(w.as_str())).count();
    found * 100 / wanted.len()
}

#[test]
fn scanned_pdf_pages_and_images_are_read_by_ocr() {
    let text_pdf = common::make_pdf(&[SCANNED]);
    let (w, h, pixels) = common::render_gray(&text_pdf, 200);
    let scanned = common::make_scanned_pdf(w, h, pixels, 200);
    assert_eq!(detect(&scanned, "scan.pdf").expect("detect").as_str(), "pdf");

    // Without OCR: classified, never silently empty.
    let off = Limits {
        ocr: OcrMode::Off,
        ..Limits::default()
    };
    let err = extract_with(docent_core::SourceKind::Pdf, &scanned, &off).expect_err("no text layer");
    assert_eq!(err.code(), "needs_ocr");

    // With OCR: the page's words come back, on page 1, marked as OCR.
    let ex = extract_with(docent_core::SourceKind::Pdf, &scanned, &Limits::default()).expect("ocr");
    assert_eq!(ex.ocr_pages, vec![1]);
    assert!(ex.pages_needing_ocr.is_empty());
    let text: String = ex.blocks.iter().map(|b| b.text.as_str()).collect();
    assert!(ex.blocks.iter().all(|b| b.page == Some(1)));
    let pct = words_found(&text);
    println!("ocr: scanned PDF page, {pct}% of words recovered");
    assert!(pct >= 80, "OCR recovered only {pct}% of the words: {text:?}");

    // An image file: PNG straight to OCR.
    let png = common::render_png(&text_pdf, 200);
    let kind = detect(&png, "scan.png").expect("detect png");
    assert_eq!(kind.as_str(), "image");
    let ex = extract_with(kind, &png, &Limits::default()).expect("ocr png");
    let text: String = ex.blocks.iter().map(|b| b.text.as_str()).collect();
    let pct = words_found(&text);
    println!("ocr: PNG image, {pct}% of words recovered");
    assert!(pct >= 80, "OCR recovered only {pct}% of the words: {text:?}");
    let err = extract_with(kind, &png, &off).expect_err("ocr off");
    assert_eq!(err.code(), "needs_ocr");

    // The extraction deadline covers OCR: past it the caller gets `timeout`
    // (and the tesseract subprocess is killed at the same deadline).
    let tight = Limits {
        timeout: std::time::Duration::from_millis(1),
        ..Limits::default()
    };
    let err = docent_ingest::extract::extract_bounded(kind, std::sync::Arc::new(png), tight).expect_err("deadline");
    assert_eq!(err.code(), "timeout", "{err}");
}
