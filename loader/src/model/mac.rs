//! Ethernet MAC addresses in their usual `aa:bb:cc:dd:ee:ff` text form.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

/// Why a MAC address did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid MAC address {0:?}: expected six hex octets like 02:54:0a:41:00:0a")]
pub struct MacParseError(pub String);

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut octets = [0u8; 6];
        let mut parts = text.split(':');
        for octet in &mut octets {
            let part = parts.next().ok_or_else(|| MacParseError(text.into()))?;
            if part.len() != 2 {
                return Err(MacParseError(text.into()));
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| MacParseError(text.into()))?;
        }
        if parts.next().is_some() {
            return Err(MacParseError(text.into()));
        }
        Ok(MacAddr(octets))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        let mac: MacAddr = "ee:ee:ee:ee:ee:EE".parse().unwrap();
        assert_eq!(mac.0, [0xee; 6]);
        assert_eq!(mac.to_string(), "ee:ee:ee:ee:ee:ee");
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "ee:ee:ee:ee:ee",
            "ee:ee:ee:ee:ee:ee:ee",
            "e:ee:ee:ee:ee:eee",
            "zz:ee:ee:ee:ee:ee",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad:?} parsed");
        }
    }
}
