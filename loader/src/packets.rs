//! Crafted frames for program tests and benchmarks: correct checksums unless a caller breaks
//! them on purpose.

/// The Internet checksum of `bytes` (0 when a header's stored checksum is right).
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet header.
pub fn ethernet(dst: [u8; 6], src: [u8; 6], ether_type: u16) -> Vec<u8> {
    let mut frame = Vec::with_capacity(128);
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&ether_type.to_be_bytes());
    frame
}

/// A 20-byte IPv4 header with a valid checksum.
pub fn ipv4_header(
    protocol: u8,
    src: [u8; 4],
    dst: [u8; 4],
    ttl: u8,
    payload_len: usize,
) -> Vec<u8> {
    let total_len = (20 + payload_len) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total_len.to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, ttl, protocol, 0, 0]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let check = checksum(&ip);
    ip[10..12].copy_from_slice(&check.to_be_bytes());
    ip
}

/// Ethernet + IPv4 + ICMP echo (`icmp_type` 8 request, 0 reply), identifier 0x1234.
pub fn icmp(
    macs: ([u8; 6], [u8; 6]),
    icmp_type: u8,
    src: [u8; 4],
    dst: [u8; 4],
    ttl: u8,
) -> Vec<u8> {
    let mut message = vec![
        icmp_type, 0, 0, 0, 0x12, 0x34, 0, 1, b't', b'o', b'r', b't', b'i', b'e', 0, 0,
    ];
    let check = checksum(&message);
    message[2..4].copy_from_slice(&check.to_be_bytes());
    let mut frame = ethernet(macs.0, macs.1, 0x0800);
    frame.extend_from_slice(&ipv4_header(1, src, dst, ttl, message.len()));
    frame.extend_from_slice(&message);
    frame
}

/// `inner` (an Ethernet frame) wrapped in IPIP from `outer_src` to `outer_dst`.
pub fn ipip(
    macs: ([u8; 6], [u8; 6]),
    outer_src: [u8; 4],
    outer_dst: [u8; 4],
    inner: &[u8],
) -> Vec<u8> {
    let inner_ip = &inner[14..];
    let mut frame = ethernet(macs.0, macs.1, 0x0800);
    frame.extend_from_slice(&ipv4_header(4, outer_src, outer_dst, 64, inner_ip.len()));
    frame.extend_from_slice(inner_ip);
    frame
}

/// `inner` (an Ethernet frame) wrapped in VXLAN (UDP `port`, `vni`) from `outer_src` to
/// `outer_dst`.
pub fn vxlan(
    macs: ([u8; 6], [u8; 6]),
    outer_src: [u8; 4],
    outer_dst: [u8; 4],
    port: u16,
    vni: u32,
    inner: &[u8],
) -> Vec<u8> {
    let mut udp = Vec::with_capacity(16 + inner.len());
    udp.extend_from_slice(&40000u16.to_be_bytes());
    udp.extend_from_slice(&port.to_be_bytes());
    udp.extend_from_slice(&((16 + inner.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0, 0x08, 0, 0, 0]);
    udp.extend_from_slice(&[(vni >> 16) as u8, (vni >> 8) as u8, vni as u8, 0]);
    udp.extend_from_slice(inner);
    let mut frame = ethernet(macs.0, macs.1, 0x0800);
    frame.extend_from_slice(&ipv4_header(17, outer_src, outer_dst, 64, udp.len()));
    frame.extend_from_slice(&udp);
    frame
}
