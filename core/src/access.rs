//! Who is asking, and the filter every retrieval carries.
//!
//! Invariant: a retrieval never runs without an [`AccessFilter`]; the filter
//! is pushed into each index query. A chunk whose access labels do not
//! intersect the caller's groups is never scored. An empty group list matches
//! nothing (fail closed).

use serde::{Deserialize, Serialize};

/// The label given to documents uploaded without explicit access labels, and
/// held by the default principal. Operators restrict documents by giving them
/// other labels.
pub const DEFAULT_GROUP: &str = "everyone";
/// The collection used when none is named.
pub const DEFAULT_COLLECTION: &str = "default";

/// What a caller may do besides reading what its groups allow. Ordered:
/// each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessRole {
    /// Search, chat, read documents its groups allow.
    Reader,
    /// Also upload and delete documents.
    Editor,
    /// Also administer (keys, users, any document's labels).
    Admin,
}

impl AccessRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reader => "reader",
            Self::Editor => "editor",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reader" => Some(Self::Reader),
            "editor" => Some(Self::Editor),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub user: String,
    pub groups: Vec<String>,
    pub role: AccessRole,
}

impl Principal {
    /// The single principal of the embedded, sign-in-less setup (when
    /// `access.require_auth` is off and a request carries no key).
    pub fn default_user() -> Self {
        Self {
            user: "local".to_owned(),
            groups: vec![DEFAULT_GROUP.to_owned()],
            role: AccessRole::Admin,
        }
    }

    /// Whether this caller holds `role` (or a higher one).
    pub fn has(&self, role: AccessRole) -> bool {
        self.role >= role
    }
}

/// What a retrieval may see. Both index legs translate this into their native
/// filter; nothing is filtered after scoring.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessFilter {
    /// Collections to search; empty means every collection.
    pub collections: Vec<String>,
    /// The caller's groups; a chunk must carry at least one of them.
    pub groups: Vec<String>,
    /// Restrict to these documents; empty means no restriction.
    pub doc_ids: Vec<uuid::Uuid>,
    /// Restrict to documents carrying at least one of these tags; empty
    /// means no restriction.
    pub tags: Vec<String>,
    /// Restrict to documents dated in this range (unix seconds, both ends
    /// inclusive). A document's date is the one given at upload, else its
    /// upload time.
    pub date_from: Option<i64>,
    pub date_to: Option<i64>,
}

impl AccessFilter {
    pub fn for_principal(principal: &Principal) -> Self {
        Self {
            groups: principal.groups.clone(),
            ..Self::default()
        }
    }

    /// True when no chunk can possibly pass: no groups (fail closed) or an
    /// empty date range.
    pub fn denies_everything(&self) -> bool {
        self.groups.is_empty() || matches!((self.date_from, self.date_to), (Some(a), Some(b)) if a > b)
    }

    /// Whether a document passes every restriction (labels, collection,
    /// document ids, tags, date). Used after hydration as defence in depth.
    pub fn allows_doc(&self, doc: &crate::model::Document) -> bool {
        if !self.allows(&doc.collection, &doc.access, doc.id) {
            return false;
        }
        let tags_ok = self.tags.is_empty() || doc.tags.iter().any(|t| self.tags.contains(t));
        let date = doc.effective_date();
        let from_ok = self.date_from.is_none_or(|f| date >= f);
        let to_ok = self.date_to.is_none_or(|t| date <= t);
        tags_ok && from_ok && to_ok
    }

    /// Whether a chunk with these labels passes. Used for checks after
    /// hydration (defence in depth), never as the only filter.
    pub fn allows(&self, collection: &str, labels: &[String], doc_id: uuid::Uuid) -> bool {
        let group_ok = labels.iter().any(|l| self.groups.iter().any(|g| g == l));
        let coll_ok = self.collections.is_empty() || self.collections.iter().any(|c| c == collection);
        let doc_ok = self.doc_ids.is_empty() || self.doc_ids.contains(&doc_id);
        group_ok && coll_ok && doc_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_groups_deny_everything() {
        let f = AccessFilter::default();
        assert!(f.denies_everything());
        assert!(!f.allows("default", &["everyone".into()], uuid::Uuid::nil()));
    }

    #[test]
    fn labels_must_intersect_groups() {
        let f = AccessFilter::for_principal(&Principal::default_user());
        assert!(f.allows("default", &["x".into(), "everyone".into()], uuid::Uuid::nil()));
        assert!(!f.allows("default", &["x".into()], uuid::Uuid::nil()));
        assert!(!f.allows("default", &[], uuid::Uuid::nil()));
    }

    #[test]
    fn collection_and_doc_restrictions_apply() {
        let id = uuid::Uuid::new_v4();
        let mut f = AccessFilter::for_principal(&Principal::default_user());
        f.collections = vec!["hr".into()];
        assert!(!f.allows("default", &["everyone".into()], id));
        assert!(f.allows("hr", &["everyone".into()], id));
        f.doc_ids = vec![uuid::Uuid::nil()];
        assert!(!f.allows("hr", &["everyone".into()], id));
    }
}
