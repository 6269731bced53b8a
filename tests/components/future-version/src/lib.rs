//! A component built against a weft contract this host does not know
//! (`weft:connector@9.0.0`). Loading it must fail with a clear
//! "incompatible WIT version" error.

wit_bindgen::generate!({
    inline: r#"
        package weft:connector@9.0.0;
        interface metadata { describe: func() -> string; }
        interface source { fetch: func() -> string; }
        world future-source { export metadata; export source; }
    "#,
});

struct Future;

impl exports::weft::connector::metadata::Guest for Future {
    fn describe() -> String {
        "from the future".into()
    }
}

impl exports::weft::connector::source::Guest for Future {
    fn fetch() -> String {
        String::new()
    }
}

export!(Future);
