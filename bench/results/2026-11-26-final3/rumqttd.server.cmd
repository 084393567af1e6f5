env RUST_LOG=error /root/.cargo/bin/rumqttd -q -c $WORK/rumqttd.toml
