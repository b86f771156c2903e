//! `ip()`, `cidr()` and their accessors: IPv4 and IPv6 addresses and prefixes.

use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ip(IpAddr);

impl Opaque for Ip {
    fn runtime_type_name(&self) -> &str {
        IP
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Opaque for Cidr {
    fn runtime_type_name(&self) -> &str {
        CIDR
    }
}

/// Kubernetes' `ip()`: IPv4 or IPv6, without zones and without IPv4-mapped IPv6 forms.
pub(super) fn parse_ip(text: &str) -> Result<IpAddr, String> {
    let addr: IpAddr = text.parse().map_err(|_| format!("`{}` is not an IP address", excerpt(text, 60)))?;
    if let IpAddr::V6(v6) = addr {
        if v6.to_ipv4_mapped().is_some() {
            return Err(format!("`{}`: IPv4-mapped IPv6 addresses are not allowed", excerpt(text, 60)));
        }
    }
    Ok(addr)
}

pub(super) fn parse_cidr(text: &str) -> Result<Cidr, String> {
    let bad = || format!("`{}` is not a CIDR (address/prefix length)", excerpt(text, 60));
    let (addr, prefix) = text.split_once('/').ok_or_else(bad)?;
    let addr = parse_ip(addr)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= max && !prefix.starts_with('+')).ok_or_else(bad)?;
    Ok(Cidr { addr, prefix })
}

pub(super) fn bits(addr: IpAddr) -> (u128, u32) {
    match addr {
        IpAddr::V4(a) => (u32::from(a) as u128, 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

pub(super) fn masked(addr: IpAddr, prefix: u8) -> IpAddr {
    let (value, width) = bits(addr);
    let keep = if prefix == 0 { 0 } else { (!0u128) << (width - prefix as u32) };
    let value = value & keep;
    match addr {
        IpAddr::V4(_) => IpAddr::V4((value as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(value.into()),
    }
}

impl Cidr {
    fn contains(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.addr.is_ipv4() && masked(addr, self.prefix) == masked(self.addr, self.prefix)
    }
}

pub(super) fn ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let addr = parse_ip(&string_arg(&args, 0)?).map_err(|e| fail("ip", e))?;
    out(Value::Opaque(Arc::new(Ip(addr))))
}

pub(super) fn is_ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(parse_ip(&string_arg(&args, 0)?).is_ok())
}

pub(super) fn ip_is_canonical<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let text = string_arg(&args, 0)?;
    let addr = parse_ip(&text).map_err(|e| fail("ip.isCanonical", e))?;
    bool_out(addr.to_string() == *text)
}

pub(super) fn to_string<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    match arg(&args, 0)? {
        Value::Opaque(o) => match (o.downcast_ref::<Ip>(), o.downcast_ref::<Cidr>()) {
            (Some(ip), _) => string_value(&ip.0.to_string()),
            (_, Some(c)) => string_value(&format!("{}/{}", c.addr, c.prefix)),
            _ => Err(fail("string", "not an IP or CIDR")),
        },
        other => Err(fail("string", format!("not an IP or CIDR: {}", other.type_of()))),
    }
}

pub(super) fn ip_arg(args: &[CowVal<'_, '_>]) -> Result<IpAddr, ExecutionError> {
    Ok(opaque_arg::<Ip>(args, 0, "ip")?.0)
}

pub(super) fn ip_family<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    out(Value::Int(if ip_arg(&args)?.is_ipv4() { 4 } else { 6 }))
}

pub(super) fn ip_is_unspecified<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(ip_arg(&args)?.is_unspecified())
}

pub(super) fn ip_is_loopback<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(ip_arg(&args)?.is_loopback())
}

pub(super) fn link_local_multicast(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.octets()[..3] == [224, 0, 0],
        IpAddr::V6(a) => a.segments()[0] & 0xff0f == 0xff02,
    }
}

pub(super) fn link_local_unicast(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.octets()[..2] == [169, 254],
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
    }
}

pub(super) fn ip_is_link_local_multicast<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(link_local_multicast(ip_arg(&args)?))
}

pub(super) fn ip_is_link_local_unicast<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(link_local_unicast(ip_arg(&args)?))
}

/// Go's `net.IP.IsGlobalUnicast`, which Kubernetes uses.
pub(super) fn ip_is_global_unicast<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let addr = ip_arg(&args)?;
    let broadcast = matches!(addr, IpAddr::V4(a) if a.is_broadcast());
    bool_out(
        !(addr.is_unspecified() || addr.is_loopback() || addr.is_multicast() || link_local_unicast(addr) || broadcast),
    )
}

pub(super) fn cidr<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let c = parse_cidr(&string_arg(&args, 0)?).map_err(|e| fail("cidr", e))?;
    out(Value::Opaque(Arc::new(c)))
}

pub(super) fn is_cidr<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(parse_cidr(&string_arg(&args, 0)?).is_ok())
}

pub(super) fn cidr_contains_ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let c = opaque_arg::<Cidr>(&args, 0, "cidr")?;
    let addr = match arg(&args, 1)? {
        Value::String(s) => parse_ip(&s).map_err(|e| fail("containsIP", e))?,
        _ => opaque_arg::<Ip>(&args, 1, "ip")?.0,
    };
    bool_out(c.contains(addr))
}

pub(super) fn cidr_contains_cidr<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let c = opaque_arg::<Cidr>(&args, 0, "cidr")?;
    let other = match arg(&args, 1)? {
        Value::String(s) => parse_cidr(&s).map_err(|e| fail("containsCIDR", e))?,
        _ => opaque_arg::<Cidr>(&args, 1, "cidr")?,
    };
    bool_out(other.prefix >= c.prefix && c.contains(other.addr))
}

pub(super) fn cidr_ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    out(Value::Opaque(Arc::new(Ip(opaque_arg::<Cidr>(&args, 0, "cidr")?.addr))))
}

pub(super) fn cidr_masked<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let c = opaque_arg::<Cidr>(&args, 0, "cidr")?;
    out(Value::Opaque(Arc::new(Cidr { addr: masked(c.addr, c.prefix), prefix: c.prefix })))
}

pub(super) fn cidr_prefix_length<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    out(Value::Int(opaque_arg::<Cidr>(&args, 0, "cidr")?.prefix as i64))
}
