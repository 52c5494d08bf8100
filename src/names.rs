//! One spelling per enum. [`named_enum!`] declares an enum and the name of each value in one table, and derives
//! from it `ALL`, `NAMES`, `name()`, `help()`, `Display`, `FromStr` and serde's `Serialize`/`Deserialize`. The
//! command line (clap parses with `NAMES`), the query parser, the kernel and model files and the OpenAPI test all
//! read these, so a value is spelled in exactly one place.

/// A name that is none of an enum's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be one of {}; got {got:?}", .expected.join(", "))]
pub struct UnknownName {
    /// What was being named, e.g. `init`.
    pub what: &'static str,
    /// The name given.
    pub got: String,
    /// The names that are accepted.
    pub expected: &'static [&'static str],
}

/// What [`named_enum!`] gives every enum it declares, for code generic over them (the command line's parsers).
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub(crate) trait Named: Copy + Send + Sync + 'static {
    /// The value's one spelling.
    fn name(self) -> &'static str;
    /// The value's doc comment on one line; empty when it has none.
    fn help(self) -> &'static str;
}

/// Declares a fieldless enum with one name per value:
///
/// ```text
/// named_enum! {
///     /// How the PNG is compressed.
///     pub enum Compression ("compression", default Fast) {
///         /// Fastest.
///         Fast = "fast",
///         Best = "best",
///     }
/// }
/// ```
///
/// The string in parentheses is what the value names (it starts the [`UnknownName`] message); `default V`, when
/// given, implements `Default`. Variants take doc comments only; the doc comment is also the value's `help()`.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal $(, default $default:ident)?) {
            $(
                $(#[doc = $doc:literal])*
                $variant:ident = $spelling:literal,
            )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $(
                $(#[doc = $doc])*
                $variant,
            )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The name of every value, in the order of `ALL`.
            pub const NAMES: &'static [&'static str] = &[$($spelling),+];

            /// The one spelling of this value: on the command line, in query strings, in files and in JSON.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $spelling,)+
                }
            }

            /// The value's doc comment on one line (help texts); empty when it has none.
            pub fn help(self) -> &'static str {
                match self {
                    $($name::$variant => concat!("" $(, $doc)*).trim(),)+
                }
            }
        }

        impl $crate::names::Named for $name {
            fn name(self) -> &'static str {
                $name::name(self)
            }
            fn help(self) -> &'static str {
                $name::help(self)
            }
        }

        $(
            impl Default for $name {
                fn default() -> Self {
                    $name::$default
                }
            }
        )?

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::names::UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL.iter().copied().find(|v| v.name() == s).ok_or_else(|| $crate::names::UnknownName {
                    what: $what,
                    got: s.to_owned(),
                    expected: Self::NAMES,
                })
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(|_| <D::Error as ::serde::de::Error>::unknown_variant(&s, Self::NAMES))
            }
        }
    };
}

pub(crate) use named_enum;

#[cfg(test)]
mod tests {
    named_enum! {
        /// A test enum.
        enum Colour ("colour", default Green) {
            /// Like grass,
            /// or leaves.
            Green = "green",
            Dark = "dark_blue",
        }
    }

    #[test]
    fn one_table_gives_every_spelling() {
        assert_eq!(Colour::NAMES, ["green", "dark_blue"]);
        assert_eq!(Colour::ALL.iter().map(|c| c.to_string()).collect::<Vec<_>>(), Colour::NAMES);
        assert_eq!("dark_blue".parse::<Colour>(), Ok(Colour::Dark));
        assert_eq!(Colour::default(), Colour::Green);
        assert_eq!(Colour::Green.help(), "Like grass, or leaves.");
        assert_eq!(Colour::Dark.help(), "");
        let e = "Dark".parse::<Colour>().unwrap_err();
        assert_eq!(e.to_string(), "colour must be one of green, dark_blue; got \"Dark\"");
        assert_eq!(serde_json::to_string(&Colour::Dark).unwrap(), "\"dark_blue\"");
        assert_eq!(serde_json::from_str::<Colour>("\"green\"").unwrap(), Colour::Green);
        let e = serde_json::from_str::<Colour>("\"blue\"").unwrap_err().to_string();
        assert!(e.starts_with("unknown variant `blue`, expected `green` or `dark_blue`"), "{e}");
    }
}
