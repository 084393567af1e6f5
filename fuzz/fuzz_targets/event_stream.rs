//! Fuzz the operator event stream's input: bytes as they come off the TLS socket, cut into
//! lines, read as the first line's `login_req` and as the messages of a logged-in session. The
//! first input byte sets the line limit (so over-long lines are reached with small inputs) and
//! where the stream is cut into reads. Nothing may panic; how the stream is cut does not change
//! the lines; the splitter never holds more than the limit; every refusal is the documented
//! answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_api::event_stream_input::{
    parse_client_message, parse_login_req, ClientMessage, Incoming, LineSplitter,
};

fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let max = usize::from(first % 64) + 1;
    let step = usize::from(first / 64) * 3 + 1;

    let mut whole = LineSplitter::new(max);
    let at_once = whole.push(stream);
    assert!(whole.pending() <= max);
    let mut cut = LineSplitter::new(max);
    let mut in_pieces = Vec::new();
    for piece in stream.chunks(step) {
        in_pieces.extend(cut.push(piece));
        assert!(cut.pending() <= max);
    }
    assert_eq!(at_once, in_pieces);

    // The messages themselves, without a length limit.
    let mut unlimited = LineSplitter::new(usize::MAX);
    for (i, item) in unlimited.push(stream).into_iter().enumerate() {
        let Incoming::Text(line) = item else {
            continue;
        };
        if i == 0 {
            match parse_login_req(&line) {
                Ok(req) => {
                    let sub = req.subscription;
                    assert!((1..=32767).contains(&sub.prefetch));
                    assert!((1..=32).contains(&sub.subkey.len()));
                    assert!(!sub.kinds.is_empty());
                }
                Err(answer) => {
                    assert_eq!(answer["cmd"], "login_res");
                    assert_eq!(answer["result"], false);
                    assert!(answer["code"].is_string());
                }
            }
        }
        match parse_client_message(&line) {
            Ok(ClientMessage::Ack(ids)) => assert!((1..=32767).contains(&ids.len())),
            Ok(ClientMessage::Control { .. } | ClientMessage::Ping) => {}
            Err(answer) => {
                assert_eq!(answer["cmd"], "invalid_msg");
                assert!(answer["code"].is_string());
            }
        }
    }
});
