//! The value types of both files and their parsers. Each parser takes the
//! value word and returns the typed value or the reason it is wrong (one
//! sentence, no final full stop).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The Teredo MTU (RFC 4380 section 5.1.1) and the IPv6 minimum (RFC 8200).
pub const DEFAULT_MTU: u16 = 1280;
/// The smallest MTU an IPv6 link may have (RFC 8200 section 5).
pub const MIN_MTU: u16 = 1280;
/// The largest MTU a UDP/IPv4 datagram can carry (and a u16 can hold).
pub const MAX_MTU: u16 = 65535;
/// Longest interface name Linux accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// Parses a boolean the way the C tool does: yes/true/on/enabled and
/// no/false/off/disabled in any case, and 1/0.
pub(crate) fn parse_bool(value: &str) -> Result<bool, String> {
    const TRUE: &[&str] = &["yes", "true", "on", "enabled", "1"];
    const FALSE: &[&str] = &["no", "false", "off", "disabled", "0"];
    if TRUE.iter().any(|t| t.eq_ignore_ascii_case(value)) {
        Ok(true)
    } else if FALSE.iter().any(|f| f.eq_ignore_ascii_case(value)) {
        Ok(false)
    } else {
        Err(format!(
            "invalid boolean \"{value}\" (expected yes, true, on, enabled, 1, no, false, off, disabled or 0)"
        ))
    }
}

/// Parses the address of the metrics listener (`MetricsListen`): a port
/// alone (on 127.0.0.1), `IPv4:PORT`, or `[IPv6]:PORT`. Port 0 is refused:
/// Prometheus must know where to scrape.
pub(crate) fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    let bad = || {
        format!("invalid listening address \"{value}\" (expected PORT, IPv4:PORT or [IPv6]:PORT)")
    };
    let (ip, port) = if let Some(rest) = value.strip_prefix('[') {
        let (ip, port) = rest.split_once("]:").ok_or_else(bad)?;
        let ip: Ipv6Addr = ip.parse().map_err(|_| bad())?;
        (IpAddr::V6(ip), port)
    } else if let Some((ip, port)) = value.split_once(':') {
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        (IpAddr::V4(ip), port)
    } else {
        (IpAddr::V4(Ipv4Addr::LOCALHOST), value)
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let port = parse_uint(port, 1, u16::MAX.into())
        .map_err(|why| format!("port of \"{value}\": {why}"))?;
    Ok(SocketAddr::new(ip, u16::try_from(port).unwrap_or(u16::MAX)))
}

/// The warning a metrics listener deserves when others can reach it.
pub(crate) fn listen_warning(addr: SocketAddr) -> Option<String> {
    (!addr.ip().is_loopback()).then(|| {
        format!(
            "{addr} is not a loopback address: whoever reaches it reads the daemon's counters, peers and address; restrict it with a firewall"
        )
    })
}

/// Parses an unsigned integer in `min..=max`: decimal, or hexadecimal with
/// `0x` (the C tool uses strtoul with base 0). A leading zero is refused:
/// the C tool would read `010` as octal 8, which nobody means.
pub(crate) fn parse_uint(value: &str, min: u32, max: u32) -> Result<u32, String> {
    let range = || format!("must be between {min} and {max}");
    let parsed = if let Some(hex) = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("invalid number \"{value}\" ({})", range()));
        }
        u64::from_str_radix(hex.trim_start_matches('0'), 16).or_else(|_| {
            if hex.bytes().all(|b| b == b'0') {
                Ok(0)
            } else {
                Err(())
            }
        })
    } else {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("invalid number \"{value}\" ({})", range()));
        }
        if value.len() > 1 && value.starts_with('0') {
            return Err(format!(
                "ambiguous number \"{value}\": a leading zero means octal to the C miredo; write it without the leading zero"
            ));
        }
        value.parse::<u64>().map_err(|_| ())
    };
    match parsed {
        Ok(n) if n >= u64::from(min) && n <= u64::from(max) => {
            u32::try_from(n).map_err(|_| format!("{value} is out of range: {}", range()))
        }
        // Too many digits for u64 is out of range too.
        _ => Err(format!("{value} is out of range: {}", range())),
    }
}

/// Parses a dotted-quad IPv4 address (no host names, no short forms).
pub(crate) fn parse_ipv4(value: &str) -> Result<Ipv4Addr, String> {
    value.parse::<Ipv4Addr>().map_err(|_| {
        format!("invalid IPv4 address \"{value}\" (expected a dotted quad such as 192.0.2.1)")
    })
}

/// Parses an IPv4 netmask: a dotted quad whose one bits are contiguous.
pub(crate) fn parse_netmask(value: &str) -> Result<Ipv4Addr, String> {
    let mask = parse_ipv4(value)?;
    let bits = u32::from(mask);
    // Contiguous ones from the top: the complement is 2^n - 1.
    if (!bits).wrapping_add(1) & !bits != 0 {
        return Err(format!(
            "invalid netmask {value}: its one bits must be contiguous from the left (e.g. 255.255.255.0)"
        ));
    }
    Ok(mask)
}

/// Parses a Teredo prefix: an IPv6 address of which only the first 32 bits
/// may be non-zero (a /32), not zero, multicast or link-local. Returns the
/// first 32 bits.
pub(crate) fn parse_prefix(value: &str) -> Result<u32, String> {
    let addr: Ipv6Addr = value.parse().map_err(|_| {
        format!("invalid IPv6 prefix \"{value}\" (expected a /32 prefix written as an address, such as 2001:0::)")
    })?;
    let bits = u128::from(addr);
    let prefix = (bits >> 96) as u32;
    if bits & ((1u128 << 96) - 1) != 0 {
        return Err(format!(
            "{value} is not a /32 prefix: only its first 32 bits may be non-zero (did you mean {}::?)",
            prefix_display(prefix)
        ));
    }
    if prefix == 0 {
        return Err(format!(
            "{value} is the unspecified address, not a Teredo prefix"
        ));
    }
    if prefix >> 24 == 0xff {
        return Err(format!(
            "{value} is a multicast prefix, not a Teredo prefix"
        ));
    }
    if prefix >> 22 == 0xfe80 >> 6 {
        return Err(format!(
            "{value} is a link-local prefix, not a Teredo prefix"
        ));
    }
    Ok(prefix)
}

/// `2001:0` for 0x20010000: the first two groups of a /32.
pub(crate) fn prefix_display(prefix: u32) -> String {
    format!("{:x}:{:x}", prefix >> 16, prefix & 0xffff)
}

/// Parses an interface name with the Linux kernel's rules
/// (`dev_valid_name`): 1 to 15 bytes, not `.` or `..`, no `/`, `:` or
/// white space.
pub(crate) fn parse_ifname(value: &str) -> Result<String, String> {
    if value.len() > MAX_IFNAME_LEN {
        return Err(format!(
            "interface name \"{value}\" is {} bytes long; Linux allows at most {MAX_IFNAME_LEN}",
            value.len()
        ));
    }
    if value == "." || value == ".." {
        return Err(format!("\"{value}\" cannot be an interface name"));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "interface name \"{value}\" contains {bad:?}, which Linux does not allow"
        ));
    }
    Ok(value.to_owned())
}

/// Checks a server name: an IPv4 literal or a host name (RFC 1123 labels).
/// The name is not resolved here; the daemon resolves it at start and on
/// reload, when the network may be up.
pub(crate) fn check_host(value: &str) -> Result<String, String> {
    if value.parse::<Ipv4Addr>().is_ok() {
        return Ok(value.to_owned());
    }
    let bad = || format!("invalid host name or IPv4 address \"{value}\"");
    let name = value.strip_suffix('.').unwrap_or(value);
    if name.is_empty() || name.len() > 253 {
        return Err(bad());
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(bad());
        }
    }
    // An all-numeric last label is an IPv4 address gone wrong
    // (192.0.2, 300.1.1.1), never a DNS name (RFC 3696 section 2).
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "invalid IPv4 address \"{value}\" (expected a dotted quad such as 192.0.2.1, or a host name)"
        ));
    }
    Ok(value.to_owned())
}

/// A syslog facility (syslog(3)), as named in the configuration files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SyslogFacility {
    Auth,
    AuthPriv,
    Cron,
    /// The default.
    #[default]
    Daemon,
    Ftp,
    Kern,
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
    Lpr,
    Mail,
    News,
    Syslog,
    User,
    Uucp,
}

impl SyslogFacility {
    /// Every facility, in the order of the documentation.
    pub const ALL: [SyslogFacility; 20] = [
        SyslogFacility::Auth,
        SyslogFacility::AuthPriv,
        SyslogFacility::Cron,
        SyslogFacility::Daemon,
        SyslogFacility::Ftp,
        SyslogFacility::Kern,
        SyslogFacility::Local0,
        SyslogFacility::Local1,
        SyslogFacility::Local2,
        SyslogFacility::Local3,
        SyslogFacility::Local4,
        SyslogFacility::Local5,
        SyslogFacility::Local6,
        SyslogFacility::Local7,
        SyslogFacility::Lpr,
        SyslogFacility::Mail,
        SyslogFacility::News,
        SyslogFacility::Syslog,
        SyslogFacility::User,
        SyslogFacility::Uucp,
    ];

    /// The name as written in the files (lower case).
    pub fn as_str(self) -> &'static str {
        match self {
            SyslogFacility::Auth => "auth",
            SyslogFacility::AuthPriv => "authpriv",
            SyslogFacility::Cron => "cron",
            SyslogFacility::Daemon => "daemon",
            SyslogFacility::Ftp => "ftp",
            SyslogFacility::Kern => "kern",
            SyslogFacility::Local0 => "local0",
            SyslogFacility::Local1 => "local1",
            SyslogFacility::Local2 => "local2",
            SyslogFacility::Local3 => "local3",
            SyslogFacility::Local4 => "local4",
            SyslogFacility::Local5 => "local5",
            SyslogFacility::Local6 => "local6",
            SyslogFacility::Local7 => "local7",
            SyslogFacility::Lpr => "lpr",
            SyslogFacility::Mail => "mail",
            SyslogFacility::News => "news",
            SyslogFacility::Syslog => "syslog",
            SyslogFacility::User => "user",
            SyslogFacility::Uucp => "uucp",
        }
    }

    pub(crate) fn parse(value: &str) -> Result<Self, String> {
        SyslogFacility::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(value))
            .ok_or_else(|| {
                format!(
                    "unknown syslog facility \"{value}\" (expected daemon, user, kern, local0 to local7, auth, authpriv, cron, ftp, lpr, mail, news, syslog or uucp)"
                )
            })
    }
}

impl fmt::Display for SyslogFacility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `DiscoveryInterfaces` pattern: a POSIX extended regular expression
/// (regcomp with REG_EXTENDED, as the C tool uses) matched against interface
/// names, unanchored. The parser checks its syntax with the rules of glibc;
/// the daemon compiles it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryInterfaces(String);

impl DiscoveryInterfaces {
    /// The pattern as written in the file.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn parse(value: &str) -> Result<Self, String> {
        check_ere(value)
            .map(|()| DiscoveryInterfaces(value.to_owned()))
            .map_err(|why| format!("invalid extended regular expression \"{value}\": {why}"))
    }
}

/// The character classes POSIX defines for bracket expressions.
const ERE_CLASSES: &[&str] = &[
    "alnum", "alpha", "blank", "cntrl", "digit", "graph", "lower", "print", "punct", "space",
    "upper", "xdigit",
];

/// The largest repetition count glibc accepts (RE_DUP_MAX).
const ERE_DUP_MAX: u32 = 0x7fff;

/// Checks the syntax of a POSIX extended regular expression, agreeing with
/// glibc's regcomp(REG_EXTENDED) (see the tests): unbalanced `(`, an
/// unterminated or malformed bracket expression, a bad interval, a
/// repetition with nothing to repeat, a trailing backslash.
pub(crate) fn check_ere(pattern: &str) -> Result<(), String> {
    let p: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut open = 0usize;
    // Whether a repetition operator here has something to repeat.
    let mut operand = false;
    while let Some(&c) = p.get(i) {
        match c {
            '\\' => {
                if p.get(i + 1).is_none() {
                    return Err("it ends with a lone backslash".into());
                }
                i += 2;
                operand = true;
            }
            '(' => {
                open += 1;
                i += 1;
                operand = false;
            }
            ')' => {
                // glibc reads an unmatched ')' as an ordinary character.
                open = open.saturating_sub(1);
                i += 1;
                operand = true;
            }
            '|' | '^' | '$' => {
                i += 1;
                operand = false;
            }
            '*' | '+' | '?' | '{' => {
                if !operand {
                    return Err(format!("'{c}' has nothing to repeat"));
                }
                i = if c == '{' {
                    check_interval(&p, i)?
                } else {
                    i + 1
                };
            }
            '[' => {
                i = check_bracket(&p, i)?;
                operand = true;
            }
            _ => {
                i += 1;
                operand = true;
            }
        }
    }
    if open > 0 {
        return Err("a '(' is not closed".into());
    }
    Ok(())
}

/// Checks `{m}`, `{m,}`, `{,n}`, `{m,n}` starting at `p[start] == '{'`;
/// returns the index after `}`.
fn check_interval(p: &[char], start: usize) -> Result<usize, String> {
    let close = p
        .iter()
        .skip(start)
        .position(|&c| c == '}')
        .map(|n| start + n)
        .ok_or("a '{' interval is not closed")?;
    let inner: String = p.get(start + 1..close).unwrap_or(&[]).iter().collect();
    let bad = || format!("invalid interval {{{inner}}}");
    let number = |s: &str| -> Result<Option<u32>, String> {
        if s.is_empty() {
            return Ok(None);
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        match s.parse::<u32>() {
            Ok(n) if n <= ERE_DUP_MAX => Ok(Some(n)),
            _ => Err(format!("repetition count {s} is over {ERE_DUP_MAX}")),
        }
    };
    match inner.split_once(',') {
        None => {
            if number(&inner)?.is_none() {
                return Err(bad());
            }
        }
        Some((lo, hi)) => {
            if let (Some(lo), Some(hi)) = (number(lo)?, number(hi)?) {
                if lo > hi {
                    return Err(format!("invalid interval {{{inner}}}: {lo} is over {hi}"));
                }
            }
        }
    }
    Ok(close + 1)
}

/// One element of a bracket expression that can end a range.
enum BracketItem {
    Char(char),
    Class,
}

/// Checks a bracket expression starting at `p[start] == '['`; returns the
/// index after its closing `]`.
fn check_bracket(p: &[char], start: usize) -> Result<usize, String> {
    let unterminated = || "a '[' bracket expression is not closed".to_string();
    let mut i = start + 1;
    if p.get(i) == Some(&'^') {
        i += 1;
    }
    let mut first = true;
    // The previous item, if it may start a range.
    let mut previous: Option<char> = None;
    // Whether the previous item ended a range ("a-c-e" is invalid).
    let mut after_range = false;
    loop {
        let c = *p.get(i).ok_or_else(unterminated)?;
        if c == ']' && !first {
            return Ok(i + 1);
        }
        first = false;
        if c == '-' && !after_range {
            if let Some(lo) = previous {
                // A range, unless the '-' is the last character.
                if p.get(i + 1) != Some(&']') {
                    let (item, next) = bracket_item(p, i + 1)?;
                    let hi = match item {
                        BracketItem::Char(hi) => hi,
                        BracketItem::Class => {
                            return Err("a character class cannot end a range".into())
                        }
                    };
                    if lo > hi {
                        return Err(format!("invalid range {lo}-{hi}: {lo} comes after {hi}"));
                    }
                    i = next;
                    previous = None;
                    after_range = true;
                    continue;
                }
            }
        } else if c == '-' && p.get(i + 1) != Some(&']') {
            return Err("invalid range: a range cannot start where another ends".into());
        }
        let (item, next) = bracket_item(p, i)?;
        previous = match item {
            BracketItem::Char(ch) => Some(ch),
            BracketItem::Class => {
                if p.get(next) == Some(&'-') && p.get(next + 1) != Some(&']') {
                    return Err("a character class cannot start a range".into());
                }
                None
            }
        };
        after_range = false;
        i = next;
    }
}

/// Reads one bracket element at `i`: a character, `[:class:]`, `[=c=]` or
/// `[.c.]`.
fn bracket_item(p: &[char], i: usize) -> Result<(BracketItem, usize), String> {
    let c = *p.get(i).ok_or("a '[' bracket expression is not closed")?;
    let kind = match (c, p.get(i + 1)) {
        ('[', Some(&k)) if k == ':' || k == '=' || k == '.' => k,
        _ => return Ok((BracketItem::Char(c), i + 1)),
    };
    let body_start = i + 2;
    let end = (body_start..p.len().saturating_sub(1))
        .find(|&j| p.get(j) == Some(&kind) && p.get(j + 1) == Some(&']'))
        .ok_or("a '[' bracket expression is not closed")?;
    let body: String = p.get(body_start..end).unwrap_or(&[]).iter().collect();
    let next = end + 2;
    match kind {
        ':' => {
            if ERE_CLASSES.contains(&body.as_str()) {
                Ok((BracketItem::Class, next))
            } else {
                Err(format!("unknown character class [:{body}:]"))
            }
        }
        _ => {
            let mut chars = body.chars();
            match (chars.next(), chars.next()) {
                (Some(ch), None) if kind == '.' => Ok((BracketItem::Char(ch), next)),
                (Some(_), None) => Ok((BracketItem::Class, next)),
                _ => Err(format!("invalid collating element [{kind}{body}{kind}]")),
            }
        }
    }
}

#[cfg(test)]
mod tests;
