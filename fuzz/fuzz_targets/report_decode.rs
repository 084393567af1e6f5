//! Fuzz report validation: arbitrary bytes as a JSON or binary report against a model with every
//! point type. A report that validates must re-encode in the binary form and decode to the same values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_proto::model::{DataPoint, Model};

fn model() -> Model {
    let points: Vec<DataPoint> = serde_json::from_str(
        r#"[{"name":"power","type":"bool","writable":true},
            {"name":"mode","type":"enum","values":["auto","cool","heat"]},
            {"name":"level","type":"int","min":-100,"max":100,"step":5},
            {"name":"temp","type":"float","min":-40,"max":85,"step":0.5},
            {"name":"label","type":"string","max_len":16},
            {"name":"blob","type":"binary","max_len":8}]"#,
    )
    .expect("model JSON");
    Model::new(points).expect("valid model")
}

fuzz_target!(|data: &[u8]| {
    let m = model();
    if let Ok(values) = m.parse_report(data) {
        let bin = m.encode_binary(&values).expect("valid values encode");
        assert_eq!(m.parse_report(&bin).expect("re-encoded report decodes"), values);
    }
});
