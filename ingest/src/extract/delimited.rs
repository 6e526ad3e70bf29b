//! CSV and TSV: each row becomes one record line that names its columns
//! ("Drug: Amoxicillin; Dose: 500 mg"), so a retrieved row is readable on
//! its own. The rows form a table block, which the chunker never splits
//! inside a row.

use super::{normalize, Block, BlockKind, Extracted};
use crate::error::{IngestError, Result};

/// Picks the delimiter that splits the first line into the most fields.
fn sniff_delimiter(bytes: &[u8]) -> u8 {
    let first = bytes.split(|b| *b == b'\n').next().unwrap_or(bytes);
    [b',', b'\t', b';', b'|']
        .into_iter()
        .max_by_key(|d| first.iter().filter(|b| *b == d).count())
        .unwrap_or(b',')
}

pub fn extract_csv(bytes: &[u8]) -> Result<Extracted> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(sniff_delimiter(bytes))
        .flexible(true)
        .has_headers(true)
        .from_reader(bytes);
    let malformed = |e: csv::Error| IngestError::Malformed {
        kind: "csv",
        message: e.to_string(),
    };
    let headers: Vec<String> = reader
        .byte_headers()
        .map_err(malformed)?
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let h = String::from_utf8_lossy(h).trim().to_owned();
            if h.is_empty() {
                format!("column {}", i + 1)
            } else {
                h
            }
        })
        .collect();
    let mut rows = Vec::new();
    let mut record = csv::ByteRecord::new();
    while reader.read_byte_record(&mut record).map_err(malformed)? {
        let fields: Vec<String> = record
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let v = String::from_utf8_lossy(v);
                let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
                if v.is_empty() {
                    return None;
                }
                let name = headers.get(i).cloned().unwrap_or_else(|| format!("column {}", i + 1));
                Some(format!("{name}: {v}"))
            })
            .collect();
        if !fields.is_empty() {
            rows.push(fields.join("; "));
        }
    }
    Ok(Extracted {
        blocks: vec![Block {
            text: normalize(&rows.join("\n")),
            page: None,
            heading_path: Vec::new(),
            kind: BlockKind::Table,
        }],
        ..Extracted::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_name_their_columns() {
        let e =
            extract_csv(b"\xEF\xBB\xBFdrug,dose,note\nAmoxicillin,500 mg,\"with food, twice\"\nIbuprofen,,\n").unwrap();
        assert_eq!(e.blocks.len(), 1);
        assert_eq!(e.blocks[0].kind, BlockKind::Table);
        assert_eq!(
            e.blocks[0].text,
            "drug: Amoxicillin; dose: 500 mg; note: with food, twice\ndrug: Ibuprofen"
        );
    }

    #[test]
    fn tabs_and_semicolons_are_detected() {
        let e = extract_csv(b"a\tb\n1\t2\n").unwrap();
        assert_eq!(e.blocks[0].text, "a: 1; b: 2");
        let e = extract_csv(b"a;b\n1;2\n").unwrap();
        assert_eq!(e.blocks[0].text, "a: 1; b: 2");
    }
}
