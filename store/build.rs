//! `sqlx::migrate!` embeds the migrations at compile time; rebuild this
//! crate whenever one is added or edited.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
