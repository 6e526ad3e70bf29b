//! E-mail (RFC 5322 with MIME): the headers a reader needs (from, to, cc,
//! date, subject), the text body (HTML bodies converted to text), and the
//! attachments, which the pipeline ingests as child documents.

use super::{normalize, Attachment, Block, Extracted};
use crate::error::{IngestError, Result};
use mail_parser::{Address, MessageParser, MimeHeaders, PartType};

/// Attachments beyond this many are ignored (with a warning).
const MAX_ATTACHMENTS: usize = 200;

fn addresses(a: Option<&Address<'_>>) -> Option<String> {
    let list: Vec<String> = a?
        .iter()
        .map(|addr| match (addr.name(), addr.address()) {
            (Some(n), Some(e)) => format!("{n} <{e}>"),
            (None, Some(e)) => e.to_owned(),
            (Some(n), None) => n.to_owned(),
            (None, None) => String::new(),
        })
        .filter(|s| !s.is_empty())
        .collect();
    (!list.is_empty()).then(|| list.join(", "))
}

pub fn extract_eml(bytes: &[u8]) -> Result<Extracted> {
    let msg = MessageParser::default()
        .parse(bytes)
        .ok_or_else(|| IngestError::Malformed {
            kind: "eml",
            message: "no RFC 5322 message could be parsed".to_owned(),
        })?;
    let subject = msg.subject().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let mut header = Vec::new();
    for (name, value) in [
        ("From", addresses(msg.from())),
        ("To", addresses(msg.to())),
        ("Cc", addresses(msg.cc())),
        ("Date", msg.date().map(|d| d.to_rfc3339())),
        ("Subject", subject.clone()),
    ] {
        if let Some(v) = value {
            header.push(format!("{name}: {v}"));
        }
    }
    let mut blocks = vec![Block::text(normalize(&header.join("\n")), None, Vec::new())];
    let mut body = String::new();
    for i in 0..msg.text_body_count() {
        let text = match msg.text_part(i as u32).map(|p| &p.body) {
            Some(PartType::Html(html)) => super::html::extract_html(html)
                .blocks
                .into_iter()
                .map(|b| b.text)
                .collect::<Vec<_>>()
                .join("\n\n"),
            _ => msg.body_text(i).map(|t| t.into_owned()).unwrap_or_default(),
        };
        if !text.trim().is_empty() {
            if !body.is_empty() {
                body.push_str("\n\n");
            }
            body.push_str(text.trim());
        }
    }
    if !body.is_empty() {
        blocks.push(Block::text(normalize(&body), None, Vec::new()));
    }
    let mut attachments = Vec::new();
    for (n, part) in msg.attachments().enumerate() {
        if attachments.len() >= MAX_ATTACHMENTS {
            tracing::warn!(limit = MAX_ATTACHMENTS, "too many attachments; the rest are ignored");
            break;
        }
        let (file_name, bytes) = match &part.body {
            PartType::Message(inner) => (
                part.attachment_name()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("message-{}.eml", n + 1)),
                inner.raw_message().to_vec(),
            ),
            _ => {
                let ext = part
                    .content_type()
                    .and_then(|ct| ct.subtype())
                    .map(|s| match s {
                        "plain" => "txt",
                        "vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
                        "jpeg" => "jpg",
                        other => other,
                    })
                    .unwrap_or("bin");
                let name = part
                    .attachment_name()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("attachment-{}.{ext}", n + 1));
                (name, part.contents().to_vec())
            }
        };
        if !bytes.is_empty() {
            attachments.push(Attachment { file_name, bytes });
        }
    }
    Ok(Extracted {
        title: subject,
        blocks,
        attachments,
        ..Extracted::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_body_and_attachments() {
        let eml = "From: Dr. Ada Lane <ada@example.org>\r\nTo: ward7@example.org\r\nSubject: Night shift handover\r\nDate: Mon, 2 Mar 2026 07:30:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBed 4 needs a new drip at 09:00.\r\n--XX\r\nContent-Type: text/csv; name=\"meds.csv\"\r\nContent-Disposition: attachment; filename=\"meds.csv\"\r\nContent-Transfer-Encoding: base64\r\n\r\nZHJ1Zyxkb3NlCkhlcGFyaW4sNTAwMCBJVQo=\r\n--XX--\r\n";
        let e = extract_eml(eml.as_bytes()).unwrap();
        assert_eq!(e.title.as_deref(), Some("Night shift handover"));
        assert!(e.blocks[0].text.contains("From: Dr. Ada Lane <ada@example.org>"));
        assert!(e.blocks[0].text.contains("To: ward7@example.org"));
        assert!(e.blocks[0].text.contains("Date: 2026-03-02T07:30:00"));
        assert_eq!(e.blocks[1].text, "Bed 4 needs a new drip at 09:00.");
        assert_eq!(e.attachments.len(), 1);
        assert_eq!(e.attachments[0].file_name, "meds.csv");
        assert_eq!(e.attachments[0].bytes, b"drug,dose\nHeparin,5000 IU\n");
    }
}
