//! The flow model: who talks to whom, over what, and what each packet of a conversation looks like.
//!
//! A [`Flow`] is one conversation between an initiator `a` and a responder `b`; at least one of them is a captured
//! ENI. Its size (packets, both directions) is drawn from a Zipf law, so a few elephants carry a large share of the
//! packets and most flows are mice. [`Flow::step`] yields the packets in order: a TCP flow opens with SYN,
//! SYN-ACK, ACK, carries PSH/ACK data and closes with FIN or RST (or is still open when the capture ends); UDP
//! flows are request/response or one-way; ICMP and ICMPv6 are echo request/reply; GRE and SCTP exchange data.
//!
//! # Guarantees
//! A flow never changes its addresses, ports, protocol, tags or tunnel; every packet it yields fits the Ethernet MTU
//! (1500 bytes of IP; 1450 inside VXLAN) except the datagrams of a fragmenting flow, which the generator splits.
//! Ports are never 0 and never 4789 except for the one flow class that sends ordinary UDP to 4789 (and whose
//! payloads then never have VXLAN's I flag set).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::eni::{
    Eni, Enis, MacAddr, NEIGHBOUR_MAC_PREFIX, REMOTE_VM_MAC_PREFIX, UNDERLAY_MAC_PREFIX,
};
use crate::packet::{ExtHeaders, MTU, VXLAN_PORT, Vlan, tcp_flags};
use crate::rng::{Rng, Zipf};

/// Flows of at least this many packets are elephants: the generator gives them a higher packet rate.
pub const ELEPHANT_PACKETS: u32 = 64;

/// Protocol family of a flow (L4 of the innermost packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP (IPv4) or ICMPv6 (IPv6) echo.
    Icmp,
    /// GRE (portless).
    Gre,
    /// SCTP (ports).
    Sctp,
}

/// Who sends the data of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// Alternating small requests from `a` and larger responses from `b`.
    RequestResponse,
    /// `b` sends most of the bytes (TCP: two data segments per ACK).
    Download,
    /// `a` sends most of the bytes.
    Upload,
    /// Only `a` sends (UDP, GRE, ICMP without replies).
    OneWay,
}

/// One side of a flow.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// MAC of the frames this side sends (inner MAC for a tunnelled flow).
    pub mac: MacAddr,
    /// IP address.
    pub ip: IpAddr,
    /// Port (0 for portless protocols).
    pub port: u16,
    /// The ENI this side is, if it is a captured one.
    pub eni: Option<u16>,
    /// TTL / hop limit of the packets it sends.
    pub ttl: u8,
}

/// The VXLAN underlay of a tunnelled flow.
#[derive(Debug, Clone, Copy)]
pub struct Tunnel {
    /// VNI (identifies the VPC).
    pub vni: u32,
    /// This host's VTEP address.
    pub local_vtep: Ipv4Addr,
    /// The other host's VTEP address.
    pub remote_vtep: Ipv4Addr,
    /// Outer UDP source port (a hash of the inner flow, in real VTEPs).
    pub source_port: u16,
}

/// MAC of this host's underlay NIC.
pub const LOCAL_VTEP_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, UNDERLAY_MAC_PREFIX, 0x00, 0x01]);
/// MAC of the underlay router.
pub const UNDERLAY_ROUTER_MAC: MacAddr =
    MacAddr([0x02, 0x00, 0x00, UNDERLAY_MAC_PREFIX, 0xFF, 0xFF]);

/// One packet of a flow, as [`Flow::step`] decides it.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// True when `a` sends it.
    pub from_a: bool,
    /// TCP flags (0 for other protocols).
    pub flags: u8,
    /// L4 payload bytes.
    pub payload: usize,
    /// TCP: carries the MSS option.
    pub mss: bool,
    /// TCP sequence and acknowledgement numbers.
    pub seq_ack: (u32, u32),
    /// ICMP identifier and sequence number; SCTP verification tag and TSN (low bits).
    pub ident_seq: (u16, u16),
    /// The datagram is larger than the MTU: the generator should fragment it (IPv4 UDP only).
    pub oversized: bool,
}

/// A conversation.
#[derive(Debug, Clone)]
pub struct Flow {
    /// L4 protocol.
    pub kind: Kind,
    /// True for IPv6.
    pub v6: bool,
    /// Initiator.
    pub a: Endpoint,
    /// Responder.
    pub b: Endpoint,
    /// Tags of its frames.
    pub vlan: Vlan,
    /// Set when the flow crosses a VXLAN tunnel.
    pub tunnel: Option<Tunnel>,
    /// IPv4 options (IHL 6) on every packet.
    pub ip_options: bool,
    /// IPv6 extension headers on every packet.
    pub ext: ExtHeaders,
    /// IPv6 flow label.
    pub flow_label: u32,
    /// Next IPv4 identification of `a` and of `b`.
    pub ip_id: (u16, u16),
    /// Sends big datagrams that must be fragmented (IPv4 UDP).
    pub fragmenting: bool,
    /// Total packets of the flow.
    size: u32,
    /// Packets yielded so far.
    sent: u32,
    style: Style,
    close_with_rst: bool,
    rst_from_a: bool,
    seq: (u32, u32),
    ident: u16,
    echo_seq: u16,
    last_request: usize,
}

/// Flow classes and their weights (per mille of new flows).
const CLASSES: [(Class, u32); 13] = [
    (Class::TcpV4, 380),
    (Class::TcpV6, 170),
    (Class::UdpV4, 140),
    (Class::UdpV6, 60),
    (Class::IcmpV4, 45),
    (Class::IcmpV6, 30),
    (Class::GreV4, 12),
    (Class::GreV6, 5),
    (Class::SctpV4, 8),
    (Class::SctpV6, 4),
    (Class::UdpPort4789, 12),
    (Class::FragmentingUdp, 15),
    (Class::Tunnelled, 25),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    TcpV4,
    TcpV6,
    UdpV4,
    UdpV6,
    IcmpV4,
    IcmpV6,
    GreV4,
    GreV6,
    SctpV4,
    SctpV6,
    UdpPort4789,
    FragmentingUdp,
    Tunnelled,
}

const TCP_SERVICES: [u16; 14] = [
    80, 443, 22, 25, 3306, 5432, 6379, 8080, 8443, 9092, 27017, 11211, 2379, 5672,
];
const UDP_SERVICES: [u16; 9] = [53, 123, 161, 514, 1194, 3478, 443, 5353, 51820];
const SCTP_SERVICES: [u16; 3] = [2905, 3868, 36412];

/// Where the peer of a flow's ENI lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// The internet, through the VPC gateway.
    Internet,
    /// Another captured ENI of the same VPC on this host.
    LocalEni,
    /// A VM on this host that is not captured.
    Neighbour,
    /// A VM on another host, through VXLAN.
    TunnelVm,
}

/// Creates flows: holds the Zipf table of sizes.
#[derive(Debug, Clone)]
pub struct FlowFactory {
    sizes: Zipf,
}

impl FlowFactory {
    /// A factory whose flows have at most `max_size` packets.
    pub fn new(max_size: u32) -> Self {
        Self {
            sizes: Zipf::new(max_size),
        }
    }

    /// A new flow whose ENI is `eni`, with `peer_eni` available as a local peer (another ENI of the same VPC that
    /// may send in this window), drawn from `rng`.
    pub fn create(&self, rng: &mut Rng, enis: &Enis, eni: u16, peer_eni: Option<u16>) -> Flow {
        let weights = CLASSES.map(|(_, w)| w);
        let class = CLASSES[rng.weighted(&weights)].0;
        let (kind, v6) = match class {
            Class::TcpV4 => (Kind::Tcp, false),
            Class::TcpV6 => (Kind::Tcp, true),
            Class::UdpV4 | Class::UdpPort4789 | Class::FragmentingUdp => (Kind::Udp, false),
            Class::UdpV6 => (Kind::Udp, true),
            Class::IcmpV4 => (Kind::Icmp, false),
            Class::IcmpV6 => (Kind::Icmp, true),
            Class::GreV4 => (Kind::Gre, false),
            Class::GreV6 => (Kind::Gre, true),
            Class::SctpV4 => (Kind::Sctp, false),
            Class::SctpV6 => (Kind::Sctp, true),
            Class::Tunnelled => (
                if rng.chance(600_000) {
                    Kind::Tcp
                } else {
                    Kind::Udp
                },
                rng.chance(300_000),
            ),
        };
        let peer = match class {
            Class::Tunnelled => Peer::TunnelVm,
            Class::FragmentingUdp => Peer::Internet,
            _ => match rng.weighted(&[72, 18, 10]) {
                0 => Peer::Internet,
                1 if peer_eni.is_some() => Peer::LocalEni,
                1 => Peer::Internet,
                _ => Peer::Neighbour,
            },
        };
        let me = enis.get(eni);
        let which = rng.below(4) as u8;
        let mine = Endpoint {
            mac: me.mac,
            ip: me.ip(v6, which),
            port: 0,
            eni: Some(eni),
            ttl: 64,
        };
        let other = match (peer, peer_eni) {
            (Peer::LocalEni, Some(p)) => {
                let them = enis.get(p);
                Endpoint {
                    mac: them.mac,
                    ip: them.ip(v6, rng.below(4) as u8),
                    port: 0,
                    eni: Some(p),
                    ttl: 64,
                }
            }
            (Peer::Neighbour, _) => neighbour(rng, me, v6),
            (Peer::TunnelVm, _) => tunnel_vm(rng, me, v6),
            _ => Endpoint {
                mac: MacAddr::GATEWAY,
                ip: if v6 {
                    IpAddr::V6(public_v6(rng))
                } else {
                    IpAddr::V4(public_v4(rng))
                },
                port: 0,
                eni: None,
                ttl: rng.range(44, 60) as u8,
            },
        };
        // The ENI initiates half of the flows; the other half come in.
        let (mut a, mut b) = if rng.chance(500_000) {
            (mine, other)
        } else {
            (other, mine)
        };
        match kind {
            Kind::Tcp | Kind::Udp | Kind::Sctp => {
                a.port = rng.range_u16(32_768, 60_999);
                b.port = match (kind, class) {
                    (_, Class::UdpPort4789) => VXLAN_PORT,
                    _ if rng.chance(150_000) => loop {
                        let p = rng.range_u16(1024, 32_767);
                        if p != VXLAN_PORT {
                            break p;
                        }
                    },
                    (Kind::Tcp, _) => TCP_SERVICES[rng.index(TCP_SERVICES.len())],
                    (Kind::Udp, _) => UDP_SERVICES[rng.index(UDP_SERVICES.len())],
                    _ => SCTP_SERVICES[rng.index(SCTP_SERVICES.len())],
                };
            }
            Kind::Icmp | Kind::Gre => {}
        }
        let style = match kind {
            Kind::Tcp => [Style::RequestResponse, Style::Download, Style::Upload]
                [rng.weighted(&[45, 40, 15])],
            Kind::Udp if class == Class::FragmentingUdp => Style::RequestResponse,
            Kind::Udp | Kind::Gre => {
                [Style::RequestResponse, Style::OneWay][rng.weighted(&[60, 40])]
            }
            Kind::Icmp => [Style::RequestResponse, Style::OneWay][rng.weighted(&[80, 20])],
            Kind::Sctp => Style::RequestResponse,
        };
        let cap = match class {
            Class::Tunnelled => 64,
            Class::FragmentingUdp => 24,
            Class::IcmpV4 | Class::IcmpV6 => 300,
            _ => u32::MAX,
        };
        let tunnel = (class == Class::Tunnelled).then(|| Tunnel {
            vni: 1000 + u32::from(me.vpc),
            local_vtep: Ipv4Addr::new(192, 168, 0, 1),
            remote_vtep: Ipv4Addr::new(192, 168, 0, rng.range(2, 254) as u8),
            source_port: rng.range_u16(49_152, 65_535),
        });
        let vlan = match rng.weighted(&[70, 20, 10]) {
            0 => Vlan::Untagged,
            1 => Vlan::Dot1q(tci(rng, 100, 4000)),
            _ if tunnel.is_some() => Vlan::Dot1q(tci(rng, 100, 4000)),
            _ => Vlan::QinQ {
                outer: tci(rng, 2000, 2100),
                inner: tci(rng, 100, 4000),
            },
        };
        let ext = if v6 && tunnel.is_none() && rng.chance(150_000) {
            match rng.below(4) {
                0 => ExtHeaders {
                    hop_by_hop: true,
                    ..ExtHeaders::default()
                },
                1 => ExtHeaders {
                    dest_opts: true,
                    ..ExtHeaders::default()
                },
                2 => ExtHeaders {
                    routing: true,
                    ..ExtHeaders::default()
                },
                _ => ExtHeaders {
                    hop_by_hop: true,
                    dest_opts: true,
                    routing: true,
                },
            }
        } else {
            ExtHeaders::default()
        };
        Flow {
            kind,
            v6,
            a,
            b,
            vlan,
            tunnel,
            ip_options: !v6 && class != Class::FragmentingUdp && rng.chance(30_000),
            ext,
            flow_label: rng.range_u32(1, 0xF_FFFF),
            ip_id: (rng.next_u64() as u16, rng.next_u64() as u16),
            fragmenting: class == Class::FragmentingUdp,
            size: self.sizes.sample(rng).min(cap),
            sent: 0,
            style,
            close_with_rst: rng.chance(300_000),
            rst_from_a: rng.chance(500_000),
            seq: (rng.next_u64() as u32, rng.next_u64() as u32),
            ident: rng.next_u64() as u16,
            echo_seq: 0,
            last_request: 56,
        }
    }
}

impl Flow {
    /// ENIs this flow's packets count for (one or two).
    pub fn enis(&self) -> (Option<u16>, Option<u16>) {
        (self.a.eni, self.b.eni)
    }

    /// True for flows of at least [`ELEPHANT_PACKETS`] packets.
    pub fn is_elephant(&self) -> bool {
        self.size >= ELEPHANT_PACKETS
    }

    /// True once every packet has been yielded.
    pub fn is_done(&self) -> bool {
        self.sent >= self.size
    }

    /// Largest L4 payload a packet of this flow can carry within the MTU.
    pub fn max_payload(&self) -> usize {
        let ip_header = if self.v6 {
            40 + self.ext.len()
        } else {
            20 + if self.ip_options { 4 } else { 0 }
        };
        let l4_header = match self.kind {
            Kind::Tcp => 20,
            Kind::Udp | Kind::Icmp => 8,
            Kind::Gre => 4,
            // Common header, DATA chunk header and up to 3 bytes of chunk padding.
            Kind::Sctp => 12 + 16 + 3,
        };
        let mtu = if self.tunnel.is_some() { MTU - 50 } else { MTU };
        mtu - ip_header - l4_header
    }

    /// The next packet; advances the flow.
    pub fn step(&mut self, rng: &mut Rng) -> Step {
        let k = self.sent;
        self.sent += 1;
        let max = self.max_payload();
        let mut step = Step {
            from_a: true,
            flags: 0,
            payload: 0,
            mss: false,
            seq_ack: (0, 0),
            ident_seq: (0, 0),
            oversized: false,
        };
        match self.kind {
            Kind::Tcp => self.tcp_step(rng, k, max, &mut step),
            Kind::Udp => {
                let (from_a, payload) = match self.style {
                    Style::OneWay => (true, response(rng, max).max(100)),
                    _ if k.is_multiple_of(2) => (true, rng.range(20, 160) as usize),
                    _ if self.fragmenting => (false, rng.range(1600, 4400) as usize),
                    _ => (false, response(rng, max)),
                };
                step.from_a = from_a;
                step.payload = payload;
                step.oversized = payload > max;
            }
            Kind::Icmp => {
                let request = self.style == Style::OneWay || k.is_multiple_of(2);
                if request {
                    self.echo_seq = self.echo_seq.wrapping_add(1);
                    self.last_request = if rng.chance(800_000) {
                        56
                    } else {
                        rng.range(8, max as u64) as usize
                    };
                }
                step.from_a = request;
                step.payload = self.last_request;
                step.ident_seq = (self.ident, self.echo_seq);
            }
            Kind::Gre => {
                step.from_a = self.style == Style::OneWay || rng.chance(500_000);
                step.payload = response(rng, max).max(60);
            }
            Kind::Sctp => {
                step.from_a = k.is_multiple_of(2);
                step.payload = response(rng, max).max(16);
                step.ident_seq = (self.ident, k as u16);
            }
        }
        step
    }

    fn tcp_step(&mut self, rng: &mut Rng, k: u32, max: usize, step: &mut Step) {
        use tcp_flags::{ACK, FIN, PSH, RST, SYN};
        let n = self.size;
        let (from_a, flags, payload) = if k == 0 {
            step.mss = true;
            (true, SYN, 0)
        } else if k == 1 && n == 2 {
            (false, RST | ACK, 0)
        } else if k == 1 {
            step.mss = true;
            (false, SYN | ACK, 0)
        } else if k == 2 {
            (true, ACK, 0)
        } else if self.close_with_rst && n >= 4 && k == n - 1 {
            (self.rst_from_a, RST | ACK, 0)
        } else if !self.close_with_rst && n >= 6 && k >= n - 3 {
            match n - k {
                3 => (true, FIN | ACK, 0),
                2 => (false, FIN | ACK, 0),
                _ => (true, ACK, 0),
            }
        } else {
            let i = k - 3;
            match self.style {
                Style::Download if i % 3 == 2 => (true, ACK, 0),
                Style::Download => (false, PSH | ACK, full_segment(rng, max)),
                Style::Upload if i % 3 == 2 => (false, ACK, 0),
                Style::Upload => (true, PSH | ACK, full_segment(rng, max)),
                _ if i.is_multiple_of(2) => (true, PSH | ACK, rng.range(20, 600) as usize),
                _ => (false, PSH | ACK, response(rng, max)),
            }
        };
        let consumed = payload as u32 + u32::from(flags & (SYN | FIN) != 0);
        step.from_a = from_a;
        step.flags = flags;
        step.payload = payload;
        if from_a {
            step.seq_ack = (self.seq.0, if k == 0 { 0 } else { self.seq.1 });
            self.seq.0 = self.seq.0.wrapping_add(consumed);
        } else {
            step.seq_ack = (self.seq.1, self.seq.0);
            self.seq.1 = self.seq.1.wrapping_add(consumed);
        }
    }
}

/// A bulk-transfer segment: full-sized a quarter of the time, else up to 600 bytes (keeps captures compact).
fn full_segment(rng: &mut Rng, max: usize) -> usize {
    if rng.chance(250_000) {
        max
    } else {
        rng.range(1, 600.min(max) as u64) as usize
    }
}

/// A response or datagram size: up to the MTU a fifth of the time, else up to 400 bytes.
fn response(rng: &mut Rng, max: usize) -> usize {
    let hi = if rng.chance(200_000) {
        max
    } else {
        400.min(max)
    };
    rng.range(40, hi as u64) as usize
}

fn tci(rng: &mut Rng, lo: u16, hi: u16) -> u16 {
    (rng.range_u16(0, 7) << 13) | rng.range_u16(lo, hi)
}

fn neighbour(rng: &mut Rng, me: &Eni, v6: bool) -> Endpoint {
    let host = rng.range(0, 31) as u8;
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::new(
            0xFD00,
            u16::from(me.vpc),
            0,
            u16::from(me.index_in_vpc),
            0,
            0,
            0,
            0x100 + u16::from(host),
        ))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, me.vpc, me.index_in_vpc, 100 + host))
    };
    let mac_index = (u16::from(me.vpc) << 13) | (u16::from(me.index_in_vpc) << 5) | u16::from(host);
    Endpoint {
        mac: MacAddr::local(NEIGHBOUR_MAC_PREFIX, mac_index),
        ip,
        port: 0,
        eni: None,
        ttl: 64,
    }
}

fn tunnel_vm(rng: &mut Rng, me: &Eni, v6: bool) -> Endpoint {
    let subnet = rng.range(128, 255) as u8;
    let host = rng.range(20, 99) as u8;
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::new(
            0xFD00,
            u16::from(me.vpc),
            0,
            u16::from(subnet),
            0,
            0,
            0,
            0x20 + u16::from(host),
        ))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, me.vpc, subnet, host))
    };
    Endpoint {
        mac: MacAddr::local(REMOTE_VM_MAC_PREFIX, u16::from_be_bytes([subnet, host])),
        ip,
        port: 0,
        eni: None,
        ttl: 64,
    }
}

/// A random unicast public IPv4 address (outside private, loopback, link-local, CGN, benchmark and multicast
/// ranges; 198.0.0.0/8 is left to the orphan fragments).
pub fn public_v4(rng: &mut Rng) -> Ipv4Addr {
    loop {
        // The low 32 bits of a random word.
        let a = Ipv4Addr::from(rng.next_u64() as u32);
        let first = a.octets()[0];
        if (1..=223).contains(&first) && ![10, 100, 127, 169, 172, 192, 198].contains(&first) {
            return a;
        }
    }
}

/// A random global unicast IPv6 address in 2000::/4 (never 2002::/16, whose text some tools render specially).
pub fn public_v6(rng: &mut Rng) -> Ipv6Addr {
    loop {
        let high = (0x2000 | (rng.next_u64() & 0x0FFF)) as u16;
        if high == 0x2002 {
            continue;
        }
        let rest = (u128::from(rng.next_u64()) << 48) ^ u128::from(rng.next_u64());
        let bits = (u128::from(high) << 112) | (rest & ((1u128 << 112) - 1));
        return Ipv6Addr::from(bits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_flows_open_and_close_properly() {
        let enis = Enis::new(8, 1);
        let factory = FlowFactory::new(64);
        let mut rng = Rng::new(4);
        let mut checked = 0;
        for _ in 0..2000 {
            let mut flow = factory.create(&mut rng, &enis, 0, Some(1));
            if flow.kind != Kind::Tcp || flow.size < 6 {
                continue;
            }
            let steps: Vec<Step> = (0..flow.size).map(|_| flow.step(&mut rng)).collect();
            assert!(flow.is_done());
            assert_eq!(steps[0].flags, tcp_flags::SYN);
            assert!(steps[0].from_a);
            assert_eq!(steps[1].flags, tcp_flags::SYN | tcp_flags::ACK);
            let last = steps.last().unwrap().flags;
            assert!(
                last == tcp_flags::ACK || last == tcp_flags::RST | tcp_flags::ACK,
                "{last}"
            );
            assert!(steps.iter().all(|s| s.payload <= flow.max_payload()));
            checked += 1;
        }
        assert!(checked > 100);
    }

    #[test]
    fn ports_avoid_vxlan_except_on_purpose() {
        let enis = Enis::new(8, 1);
        let factory = FlowFactory::new(16);
        let mut rng = Rng::new(5);
        let mut to_4789 = 0;
        for _ in 0..20_000 {
            let flow = factory.create(&mut rng, &enis, 0, None);
            assert_ne!(flow.a.port, VXLAN_PORT);
            if flow.b.port == VXLAN_PORT {
                assert_eq!(flow.kind, Kind::Udp);
                assert!(flow.tunnel.is_none());
                to_4789 += 1;
            }
            if matches!(flow.kind, Kind::Tcp | Kind::Udp | Kind::Sctp) {
                assert!(flow.a.port != 0 && flow.b.port != 0);
            }
            assert!(flow.a.eni == Some(0) || flow.b.eni == Some(0));
        }
        assert!(to_4789 > 50);
    }

    #[test]
    fn public_addresses_avoid_special_ranges() {
        let mut rng = Rng::new(6);
        for _ in 0..10_000 {
            let a = public_v4(&mut rng);
            assert!(
                !a.is_private() && !a.is_loopback() && !a.is_multicast() && a.octets()[0] != 198
            );
            let b = public_v6(&mut rng);
            assert_eq!(b.segments()[0] & 0xF000, 0x2000);
        }
    }
}
