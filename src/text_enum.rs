//! Closed sets of catalog values (a `text` column with a `CHECK (… IN (…))`
//! list) as Rust enums, decoded at the row.
//!
//! [`text_enum!`] defines such an enum from one list of `Variant = "text"`
//! pairs, so the SQL value, the JSON value (serde), `as_str()`, `Display` and
//! `FromStr` can never disagree. The catalog's CHECK lists stay the source of
//! truth: an enum here must list exactly the values its column's CHECK allows
//! (`check_lists` tests every mapped column against the migrated catalog).
//! This module must never hold domain logic; questions about a state belong
//! next to the enum, in its domain's module.

use std::fmt;

/// A value outside an enum's set, from an operator or a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownValue {
    /// What the value names ("status", "isolation", …).
    pub what: &'static str,
    /// The value given (shortened before it is echoed).
    pub value: String,
    /// Every accepted spelling.
    pub valid: &'static [&'static str],
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} {:?}; one of {}",
            self.what,
            crate::message::truncate(&self.value),
            self.valid.join(", ")
        )
    }
}

impl std::error::Error for UnknownValue {}

/// Defines a `Copy` enum stored as `text`: `sqlx::Type` (text), serde, `as_str`,
/// `Display` (honouring width and alignment), `FromStr` (exact spellings only,
/// failing with [`UnknownValue`]), `ALL` and `NAMES`.
///
/// ```ignore
/// text_enum! {
///     /// Where a tenant's data lives.
///     pub enum Isolation("isolation") {
///         Database = "database",
///         Shared = "shared",
///     }
/// }
/// ```
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:tt, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            ::serde::Serialize, ::serde::Deserialize, ::sqlx::Type,
        )]
        #[sqlx(type_name = "text")]
        $vis enum $name {
            $(
                $(#[$vmeta])*
                #[serde(rename = $text)]
                #[sqlx(rename = $text)]
                $variant,
            )+
        }

        impl $name {
            /// Every value, in the order of the catalog's CHECK list.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];
            /// Every value as stored.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The value as stored in the catalog and shown in JSON.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::text_enum::UnknownValue;

            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err($crate::text_enum::UnknownValue {
                        what: $what,
                        value: s.to_string(),
                        valid: Self::NAMES,
                    }),
                }
            }
        }
    };
}

pub(crate) use text_enum;

#[cfg(test)]
mod check_lists;

#[cfg(test)]
mod tests {
    text_enum! {
        /// A test set.
        enum Colour("colour") {
            Red = "red",
            DarkBlue = "dark_blue",
        }
    }

    #[test]
    fn every_representation_agrees() {
        for c in Colour::ALL {
            let json = serde_json::to_string(c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(serde_json::from_str::<Colour>(&json).unwrap(), *c);
            assert_eq!(c.as_str().parse::<Colour>().unwrap(), *c);
            assert_eq!(c.to_string(), c.as_str());
        }
        assert_eq!(Colour::NAMES, ["red", "dark_blue"]);
    }

    #[test]
    fn display_pads_and_parse_names_the_choices() {
        assert_eq!(format!("{:<6}|", Colour::Red), "red   |");
        let e = "Red".parse::<Colour>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown colour \"Red\"; one of red, dark_blue"
        );
    }
}
