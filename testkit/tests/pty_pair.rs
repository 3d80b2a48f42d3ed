//! Bytes written on one side of a pseudo-terminal pair arrive unchanged on the other, including
//! the bytes a tty would otherwise translate (CR, LF, ^C, ^D, 0xFF).

use std::io::{Read, Write};

use ems_testkit::pty::PtyPair;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn raw_bytes_cross_in_both_directions() {
    let pair = PtyPair::open().unwrap();
    let mut slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&pair.slave_path)
        .unwrap();
    let (mut master, _slave_fd, _path) = pair.into_master_stream().unwrap();

    let frame: Vec<u8> = vec![0x01, 0x03, 0x0d, 0x0a, 0x03, 0x04, 0xff, 0x00, 0x11, 0x13];
    master.write_all(&frame).await.unwrap();
    let got = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 10];
        slave.read_exact(&mut buf).unwrap();
        slave.write_all(&[0x0a, 0x0d, 0x7f]).unwrap();
        buf
    })
    .await
    .unwrap();
    assert_eq!(got, frame);

    let mut back = [0u8; 3];
    master.read_exact(&mut back).await.unwrap();
    assert_eq!(back, [0x0a, 0x0d, 0x7f]);
}
