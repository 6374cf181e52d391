//! A small, dependency-free reader for the kernel's BTF (BPF Type Format).
//!
//! The sensor needs a handful of structure offsets of the running kernel (see
//! [`crate::kernel_offsets`]); this module parses the raw BTF blob the kernel exposes at
//! [`Btf::VMLINUX`] and answers "where is member `a.b.c` of struct `x`", "does function `f`
//! exist", "what is the value of enumerator `v`". Only little-endian BTF is supported.
//!
//! The parser never trusts the blob: every read is bounds-checked, every reference to another
//! type is checked when it is followed, and chains of typedefs or nested anonymous members are
//! bounded so that a cyclic (corrupt) blob yields an error instead of a hang or a stack
//! overflow. Layouts follow the kernel's `Documentation/bpf/btf.rst`.
//!
//! Split BTF (kernel modules, `/sys/kernel/btf/<module>`) can be appended to a base with
//! [`Btf::from_split_file`]; type ids and string offsets then continue those of the base,
//! exactly as the kernel numbers them.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Errors of BTF parsing and lookups. Messages name the type and member involved.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The BTF file could not be read.
    #[error("cannot read BTF from {}: {source}", path.display())]
    Io {
        /// File that was read.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The blob is not valid BTF (bad header, truncated record, dangling reference, ...).
    #[error("malformed BTF: {0}")]
    Malformed(String),
    /// No struct, union (or, for [`Btf::enum_value`], enum) of that name.
    #[error("BTF has no type named `{0}`")]
    NoSuchType(String),
    /// The struct or union (named by its path from the looked-up type, e.g. `dentry.d_name`)
    /// has no member of that name, not even inside its anonymous structs and unions.
    #[error("`{ty}` has no member `{member}`")]
    NoSuchMember {
        /// Containing type, as a dotted path from the looked-up type.
        ty: String,
        /// Missing member.
        member: String,
    },
    /// A member path descends into a member that is not a struct or union (pointers are not
    /// followed: a path only walks through embedded structures).
    #[error("member `{member}` of `{ty}` is not a struct or union; cannot look inside it")]
    NotComposite {
        /// Containing type, as a dotted path from the looked-up type.
        ty: String,
        /// The member that is not a struct or union.
        member: String,
    },
    /// The member is a bitfield (not byte-aligned, or narrower than its type), so it has no
    /// byte offset.
    #[error("member `{member}` of `{ty}` is a bitfield, it has no byte offset")]
    Bitfield {
        /// Containing type, as a dotted path from the looked-up type.
        ty: String,
        /// The bitfield member.
        member: String,
    },
    /// The enum exists but has no enumerator of that name.
    #[error("enum `{enum_name}` has no value `{variant}`")]
    NoSuchEnumValue {
        /// The enum.
        enum_name: String,
        /// The missing enumerator.
        variant: String,
    },
}

/// BTF type kinds (`BTF_KIND_*`). [`Kind::Void`] stands for type id 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Void,
    Int,
    Ptr,
    Array,
    Struct,
    Union,
    Enum,
    Fwd,
    Typedef,
    Volatile,
    Const,
    Restrict,
    Func,
    FuncProto,
    Var,
    Datasec,
    Float,
    DeclTag,
    TypeTag,
    Enum64,
}

impl Kind {
    fn from_raw(raw: u32) -> Option<Kind> {
        Some(match raw {
            1 => Kind::Int,
            2 => Kind::Ptr,
            3 => Kind::Array,
            4 => Kind::Struct,
            5 => Kind::Union,
            6 => Kind::Enum,
            7 => Kind::Fwd,
            8 => Kind::Typedef,
            9 => Kind::Volatile,
            10 => Kind::Const,
            11 => Kind::Restrict,
            12 => Kind::Func,
            13 => Kind::FuncProto,
            14 => Kind::Var,
            15 => Kind::Datasec,
            16 => Kind::Float,
            17 => Kind::DeclTag,
            18 => Kind::TypeTag,
            19 => Kind::Enum64,
            _ => return None,
        })
    }

    fn is_composite(self) -> bool {
        matches!(self, Kind::Struct | Kind::Union)
    }

    /// Kinds that only qualify or rename another type.
    fn is_alias(self) -> bool {
        matches!(
            self,
            Kind::Typedef | Kind::Volatile | Kind::Const | Kind::Restrict | Kind::TypeTag
        )
    }
}

/// What [`Btf::member`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberInfo {
    /// Byte offset from the start of the looked-up type.
    pub offset: u32,
    /// Size in bytes of the member's type (typedefs and qualifiers resolved).
    pub size: u32,
    /// Kind of the member's type after resolving typedefs and qualifiers.
    pub kind: Kind,
}

/// Magic number of a little-endian BTF blob.
const BTF_MAGIC: u16 = 0xeb9f;
/// Size of `struct btf_header` (version 1).
const HEADER_LEN: usize = 24;
/// Most typedef/qualifier/array hops followed before a chain is declared cyclic.
const MAX_CHAIN: usize = 64;
/// Most levels of nested anonymous members searched.
const MAX_NESTING: u32 = 32;

/// One `struct btf_type` with the part of its trailing data the lookups need.
#[derive(Debug, Clone, Copy)]
struct Type {
    kind: Kind,
    kflag: bool,
    vlen: u16,
    name_off: u32,
    /// `size` for sized kinds, `type` for references.
    size_or_type: u32,
    /// INT: encoding word; ARRAY: element type; STRUCT/UNION: first index in `members`;
    /// ENUM/ENUM64: first index in `enumerators`.
    a: u32,
    /// ARRAY: number of elements.
    b: u32,
}

#[derive(Debug, Clone, Copy)]
struct Member {
    name_off: u32,
    type_id: u32,
    /// Raw `offset` word: a bit offset, or (kind_flag) bitfield size << 24 | bit offset.
    offset: u32,
}

#[derive(Debug, Clone, Copy)]
struct Enumerator {
    name_off: u32,
    value: i64,
}

/// A member located by a walk: offset from the start of the outermost type.
struct Found {
    bit_offset: u64,
    /// Bitfield size from a kind_flag struct; 0 when the member is not a bitfield there.
    bitfield_size: u32,
    type_id: u32,
}

/// Parsed BTF: the types of one blob (or of a base and one split blob) with name indexes.
#[derive(Clone)]
pub struct Btf {
    /// Indexed by type id; entry 0 is void.
    types: Vec<Type>,
    members: Vec<Member>,
    enumerators: Vec<Enumerator>,
    /// The string section(s); split BTF strings follow the base's, as the kernel numbers them.
    strings: Vec<u8>,
    /// Struct and union ids by name, those with members first.
    composites: HashMap<Box<str>, Vec<u32>>,
    /// Enum ids by name.
    enums: HashMap<Box<str>, Vec<u32>>,
    /// Typedef ids by name.
    typedefs: HashMap<Box<str>, Vec<u32>>,
    functions: HashSet<Box<str>>,
    /// Size of a pointer: the size of `long`, 8 when the blob does not say.
    ptr_size: u32,
    /// Whether split BTF was appended (a split blob can only extend a plain base).
    has_split: bool,
}

impl std::fmt::Debug for Btf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Btf")
            .field("types", &self.type_count())
            .field("structs_and_unions", &self.composites.len())
            .field("functions", &self.functions.len())
            .field("strings_len", &self.strings.len())
            .finish_non_exhaustive()
    }
}

fn malformed(msg: impl Into<String>) -> BtfError {
    BtfError::Malformed(msg.into())
}

fn read_u16(data: &[u8], off: usize) -> Option<u16> {
    let bytes = data.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes(bytes.try_into().ok()?))
}

fn read_u32(data: &[u8], off: usize) -> Option<u32> {
    let bytes = data.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// The NUL-terminated string at `off`, without its terminator.
fn str_at(strings: &[u8], off: u32) -> Option<&[u8]> {
    let rest = strings.get(usize::try_from(off).ok()?..)?;
    std::ffi::CStr::from_bytes_until_nul(rest)
        .ok()
        .map(std::ffi::CStr::to_bytes)
}

/// The type and string sections of a blob, after checking its header.
fn sections(data: &[u8]) -> Result<(&[u8], &[u8]), BtfError> {
    let magic = read_u16(data, 0)
        .filter(|_| data.len() >= HEADER_LEN)
        .ok_or_else(|| {
            malformed(format!(
                "{} bytes is too short for a BTF header",
                data.len()
            ))
        })?;
    if magic == BTF_MAGIC.swap_bytes() {
        return Err(malformed("big-endian BTF is not supported"));
    }
    if magic != BTF_MAGIC {
        return Err(malformed(format!(
            "bad magic {magic:#06x}, expected {BTF_MAGIC:#06x}"
        )));
    }
    let version = data.get(2).copied().unwrap_or_default();
    if version != 1 {
        return Err(malformed(format!("unsupported BTF version {version}")));
    }
    let word = |off| read_u32(data, off).ok_or_else(|| malformed("truncated header"));
    let hdr_len = word(4)? as usize;
    if hdr_len < HEADER_LEN || hdr_len > data.len() {
        return Err(malformed(format!("bad header length {hdr_len}")));
    }
    let section = |what: &str, off: u32, len: u32| {
        (off as usize)
            .checked_add(hdr_len)
            .and_then(|start| Some(start..start.checked_add(len as usize)?))
            .and_then(|range| data.get(range))
            .ok_or_else(|| {
                malformed(format!(
                    "{what} section (offset {off}, length {len}) lies outside the {} byte blob",
                    data.len()
                ))
            })
    };
    let types = section("type", word(8)?, word(12)?)?;
    let strings = section("string", word(16)?, word(20)?)?;
    if strings.last().is_some_and(|&b| b != 0) {
        return Err(malformed("string section is not NUL-terminated"));
    }
    Ok((types, strings))
}

impl Btf {
    /// Where the running kernel exposes its own BTF.
    pub const VMLINUX: &'static str = "/sys/kernel/btf/vmlinux";

    /// Reads and parses a BTF file, e.g. [`Btf::VMLINUX`].
    pub fn from_file(path: &Path) -> Result<Btf, BtfError> {
        Btf::from_bytes(read_file(path)?)
    }

    /// Parses a raw (little-endian) BTF blob. Never panics: garbage gives
    /// [`BtfError::Malformed`].
    pub fn from_bytes(data: Vec<u8>) -> Result<Btf, BtfError> {
        let mut btf = Btf {
            types: vec![Type {
                kind: Kind::Void,
                kflag: false,
                vlen: 0,
                name_off: 0,
                size_or_type: 0,
                a: 0,
                b: 0,
            }],
            members: Vec::new(),
            enumerators: Vec::new(),
            strings: Vec::new(),
            composites: HashMap::new(),
            enums: HashMap::new(),
            typedefs: HashMap::new(),
            functions: HashSet::new(),
            ptr_size: 8,
            has_split: false,
        };
        btf.append(&data, false)?;
        Ok(btf)
    }

    /// Parses split BTF (a kernel module's, `/sys/kernel/btf/<module>`) on top of `base` (the
    /// vmlinux BTF it was generated against) and returns the union of both. `base` must not
    /// itself contain split BTF.
    pub fn from_split_bytes(base: &Btf, data: Vec<u8>) -> Result<Btf, BtfError> {
        if base.has_split {
            return Err(malformed(
                "split BTF can only extend a base BTF, not another split BTF",
            ));
        }
        let mut btf = base.clone();
        btf.append(&data, true)?;
        btf.has_split = true;
        Ok(btf)
    }

    /// Reads and parses a split BTF file on top of `base`; see [`Btf::from_split_bytes`].
    pub fn from_split_file(base: &Btf, path: &Path) -> Result<Btf, BtfError> {
        Btf::from_split_bytes(base, read_file(path)?)
    }

    /// Number of types, void excluded.
    pub fn type_count(&self) -> usize {
        self.types.len().saturating_sub(1)
    }

    /// Parses one blob and appends its types and strings (ids and offsets continue those
    /// already present, which is how split BTF is numbered).
    fn append(&mut self, data: &[u8], split: bool) -> Result<(), BtfError> {
        let (type_sec, string_sec) = sections(data)?;
        if !split && string_sec.first().is_some_and(|&b| b != 0) {
            return Err(malformed(
                "string section does not start with the empty string",
            ));
        }
        self.strings.extend_from_slice(string_sec);
        let first_new = self.types.len();

        if type_sec.len() % 4 != 0 {
            return Err(malformed(format!(
                "type section length {} is not a multiple of 4",
                type_sec.len()
            )));
        }
        let words: Vec<u32> = type_sec
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let mut pos = 0usize;
        while pos < words.len() {
            let id = self.types.len();
            let truncated = || malformed(format!("type id {id} is truncated"));
            let Some(&[name_off, info, size_or_type]) = words.get(pos..pos + 3) else {
                return Err(truncated());
            };
            let vlen = (info & 0xffff) as u16;
            let raw_kind = (info >> 24) & 0x1f;
            let kind = Kind::from_raw(raw_kind)
                .ok_or_else(|| malformed(format!("type id {id} has unknown kind {raw_kind}")))?;
            let kflag = info >> 31 == 1;
            pos += 3;

            // Trailing data, in 32-bit words.
            let n = usize::from(vlen);
            let trailing = match kind {
                Kind::Int | Kind::Var | Kind::DeclTag => 1,
                Kind::Array => 3,
                Kind::Struct | Kind::Union | Kind::Datasec | Kind::Enum64 => 3 * n,
                Kind::Enum | Kind::FuncProto => 2 * n,
                _ => 0,
            };
            let extra = words.get(pos..pos + trailing).ok_or_else(truncated)?;
            pos += trailing;

            let mut ty = Type {
                kind,
                kflag,
                vlen,
                name_off,
                size_or_type,
                a: 0,
                b: 0,
            };
            match (kind, extra) {
                (Kind::Int, &[encoding]) => ty.a = encoding,
                (Kind::Array, &[elem, _index, nelems]) => {
                    ty.a = elem;
                    ty.b = nelems;
                }
                (Kind::Struct | Kind::Union, _) => {
                    ty.a = index(self.members.len())?;
                    self.members.extend(extra.chunks_exact(3).map(|m| Member {
                        name_off: m[0],
                        type_id: m[1],
                        offset: m[2],
                    }));
                }
                (Kind::Enum, _) => {
                    ty.a = index(self.enumerators.len())?;
                    self.enumerators
                        .extend(extra.chunks_exact(2).map(|e| Enumerator {
                            name_off: e[0],
                            // kind_flag says whether the values are signed.
                            value: if kflag {
                                i64::from(e[1] as i32)
                            } else {
                                i64::from(e[1])
                            },
                        }));
                }
                (Kind::Enum64, _) => {
                    ty.a = index(self.enumerators.len())?;
                    self.enumerators
                        .extend(extra.chunks_exact(3).map(|e| Enumerator {
                            name_off: e[0],
                            // Unsigned values above i64::MAX wrap; no kernel enum of interest has any.
                            value: (u64::from(e[1]) | u64::from(e[2]) << 32) as i64,
                        }));
                }
                _ => {}
            }
            index(id)?;
            self.types.push(ty);
        }

        for id in first_new..self.types.len() {
            let Some(ty) = self.types.get(id).copied() else {
                break;
            };
            let named = matches!(
                ty.kind,
                Kind::Struct
                    | Kind::Union
                    | Kind::Enum
                    | Kind::Enum64
                    | Kind::Typedef
                    | Kind::Func
                    | Kind::Int
            );
            if !named || ty.name_off == 0 {
                continue;
            }
            let name = str_at(&self.strings, ty.name_off)
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or_else(|| {
                    malformed(format!(
                        "type id {id} has a bad name offset {}",
                        ty.name_off
                    ))
                })?;
            let id = index(id)?;
            let map = match ty.kind {
                Kind::Struct | Kind::Union => &mut self.composites,
                Kind::Enum | Kind::Enum64 => &mut self.enums,
                Kind::Typedef => &mut self.typedefs,
                Kind::Func => {
                    self.functions.insert(name.into());
                    continue;
                }
                _ => {
                    if name == "long unsigned int" && matches!(ty.size_or_type, 4 | 8) {
                        self.ptr_size = ty.size_or_type;
                    }
                    continue;
                }
            };
            map.entry(name.into()).or_default().push(id);
        }
        let types = &self.types;
        for ids in self.composites.values_mut().filter(|ids| ids.len() > 1) {
            ids.sort_by_key(|&id| types.get(id as usize).is_none_or(|t| t.vlen == 0));
        }
        Ok(())
    }

    /// Whether a struct or union of that name exists.
    pub fn has_type(&self, name: &str) -> bool {
        self.composites.contains_key(name)
    }

    /// Whether a BTF function (`BTF_KIND_FUNC`) of that name exists, i.e. whether fentry/fexit
    /// programs can be attached to it.
    pub fn has_function(&self, name: &str) -> bool {
        self.functions.contains(name)
    }

    /// Byte offset of a member path inside the struct or union named `ty`, e.g.
    /// `("task_struct", &["real_parent"])`, `("mnt_namespace", &["ns", "inum"])`.
    ///
    /// Members of anonymous structs and unions are found transparently; typedefs and
    /// qualifiers are resolved when descending. Pointers are not followed: every element but the
    /// last must name an embedded struct or union. When several types share the name, those
    /// with members are tried first. A member that is not byte-aligned is a
    /// [`BtfError::Bitfield`]. An empty path is offset 0.
    pub fn member_offset(&self, ty: &str, path: &[&str]) -> Result<u32, BtfError> {
        self.locate(ty, path).map(|(offset, _)| offset)
    }

    /// Size in bytes of the type of a member path (see [`Btf::member_offset`]), typedefs and
    /// qualifiers resolved; pointers have the size of `long`.
    pub fn member_size(&self, ty: &str, path: &[&str]) -> Result<u32, BtfError> {
        let (_, type_id) = self.locate(ty, path)?;
        self.type_size(type_id)
    }

    /// Offset, size and kind of a member path in one lookup (see [`Btf::member_offset`]).
    pub fn member(&self, ty: &str, path: &[&str]) -> Result<MemberInfo, BtfError> {
        let (offset, type_id) = self.locate(ty, path)?;
        let (_, resolved) = self.resolve(type_id)?;
        Ok(MemberInfo {
            offset,
            size: self.type_size(type_id)?,
            kind: resolved.kind,
        })
    }

    /// Value of enumerator `variant` of the enum (or enum64) named `enum_name` (a typedef of
    /// an enum works too). Unsigned 64-bit values above `i64::MAX` wrap.
    pub fn enum_value(&self, enum_name: &str, variant: &str) -> Result<i64, BtfError> {
        let mut candidates = self.enums.get(enum_name).cloned().unwrap_or_default();
        for &id in self
            .typedefs
            .get(enum_name)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let (rid, t) = self.resolve(id)?;
            if matches!(t.kind, Kind::Enum | Kind::Enum64) {
                candidates.push(rid);
            }
        }
        if candidates.is_empty() {
            return Err(BtfError::NoSuchType(enum_name.to_owned()));
        }
        for id in candidates {
            let t = self.get(id)?;
            let start = t.a as usize;
            let values = self
                .enumerators
                .get(start..start + usize::from(t.vlen))
                .ok_or_else(|| {
                    malformed(format!("enum `{enum_name}` has bad enumerator indices"))
                })?;
            for e in values {
                if self.name_bytes(e.name_off)? == variant.as_bytes() {
                    return Ok(e.value);
                }
            }
        }
        Err(BtfError::NoSuchEnumValue {
            enum_name: enum_name.to_owned(),
            variant: variant.to_owned(),
        })
    }

    fn get(&self, id: u32) -> Result<&Type, BtfError> {
        self.types.get(id as usize).ok_or_else(|| {
            malformed(format!(
                "reference to type id {id}, but there are only {}",
                self.type_count()
            ))
        })
    }

    fn name_bytes(&self, off: u32) -> Result<&[u8], BtfError> {
        str_at(&self.strings, off).ok_or_else(|| malformed(format!("bad string offset {off}")))
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn resolve(&self, start: u32) -> Result<(u32, &Type), BtfError> {
        let mut id = start;
        for _ in 0..MAX_CHAIN {
            let t = self.get(id)?;
            if !t.kind.is_alias() {
                return Ok((id, t));
            }
            id = t.size_or_type;
        }
        Err(malformed(format!(
            "type chain from type id {start} is cyclic or too long"
        )))
    }

    /// Size in bytes of a type, typedefs, qualifiers and arrays resolved.
    fn type_size(&self, start: u32) -> Result<u32, BtfError> {
        let mut id = start;
        let mut count: u64 = 1;
        for _ in 0..MAX_CHAIN {
            let (rid, t) = self.resolve(id)?;
            let size = match t.kind {
                Kind::Array => {
                    count = count
                        .checked_mul(u64::from(t.b))
                        .ok_or_else(|| malformed(format!("array type id {rid} is too large")))?;
                    id = t.a;
                    continue;
                }
                Kind::Ptr => self.ptr_size,
                Kind::Int
                | Kind::Struct
                | Kind::Union
                | Kind::Enum
                | Kind::Enum64
                | Kind::Float
                | Kind::Datasec => t.size_or_type,
                other => {
                    return Err(malformed(format!("type id {rid} ({other:?}) has no size")));
                }
            };
            return count
                .checked_mul(u64::from(size))
                .and_then(|total| u32::try_from(total).ok())
                .ok_or_else(|| malformed(format!("type id {start} is too large")));
        }
        Err(malformed(format!(
            "array chain from type id {start} is cyclic or too long"
        )))
    }

    /// Struct/union ids for a name: the structs and unions of that name (those with members
    /// first), then typedefs of that name that resolve to one.
    fn composite_candidates(&self, name: &str) -> Vec<u32> {
        let mut ids = self.composites.get(name).cloned().unwrap_or_default();
        for &id in self
            .typedefs
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if let Ok((rid, t)) = self.resolve(id)
                && t.kind.is_composite()
            {
                ids.push(rid);
            }
        }
        ids
    }

    /// Byte offset and type id of a member path.
    fn locate(&self, ty: &str, path: &[&str]) -> Result<(u32, u32), BtfError> {
        let mut first_err = None;
        for id in self.composite_candidates(ty) {
            match self.walk(id, ty, path) {
                Ok(found) => return Ok(found),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| BtfError::NoSuchType(ty.to_owned())))
    }

    fn walk(&self, id: u32, ty: &str, path: &[&str]) -> Result<(u32, u32), BtfError> {
        // Dotted name of the type that holds path[i], for error messages.
        let holder = |i: usize| {
            std::iter::once(ty)
                .chain(path.iter().take(i).copied())
                .collect::<Vec<_>>()
                .join(".")
        };
        let mut current = id;
        let mut bits: u64 = 0;
        for (i, &name) in path.iter().enumerate() {
            let (_, t) = self.resolve(current)?;
            let found =
                self.find_member(t, name.as_bytes(), 0)?
                    .ok_or_else(|| BtfError::NoSuchMember {
                        ty: holder(i),
                        member: name.to_owned(),
                    })?;
            bits = bits
                .checked_add(found.bit_offset)
                .ok_or_else(|| malformed(format!("offset of `{ty}` member overflows")))?;
            if self.is_bitfield(bits, &found) {
                return Err(BtfError::Bitfield {
                    ty: holder(i),
                    member: name.to_owned(),
                });
            }
            current = found.type_id;
            if i + 1 < path.len() && !self.resolve(current)?.1.kind.is_composite() {
                return Err(BtfError::NotComposite {
                    ty: holder(i),
                    member: name.to_owned(),
                });
            }
        }
        let offset = u32::try_from(bits / 8)
            .map_err(|_| malformed(format!("offset of a member of `{ty}` does not fit 32 bits")))?;
        Ok((offset, current))
    }

    /// Finds a named member of a struct/union, looking inside anonymous members.
    fn find_member(&self, comp: &Type, name: &[u8], depth: u32) -> Result<Option<Found>, BtfError> {
        if depth > MAX_NESTING {
            return Err(malformed(
                "anonymous members are nested too deeply (cyclic?)",
            ));
        }
        let start = comp.a as usize;
        let members = self
            .members
            .get(start..start + usize::from(comp.vlen))
            .ok_or_else(|| malformed("struct has bad member indices"))?;
        for m in members {
            let (bit_offset, bitfield_size) = if comp.kflag {
                (m.offset & 0x00ff_ffff, m.offset >> 24)
            } else {
                (m.offset, 0)
            };
            let member_name = self.name_bytes(m.name_off)?;
            if !member_name.is_empty() {
                if member_name == name && !name.is_empty() {
                    let bit_offset = u64::from(bit_offset);
                    return Ok(Some(Found {
                        bit_offset,
                        bitfield_size,
                        type_id: m.type_id,
                    }));
                }
                continue;
            }
            let (_, inner) = self.resolve(m.type_id)?;
            if inner.kind.is_composite()
                && let Some(found) = self.find_member(inner, name, depth + 1)?
            {
                let bit_offset = found.bit_offset + u64::from(bit_offset);
                return Ok(Some(Found {
                    bit_offset,
                    ..found
                }));
            }
        }
        Ok(None)
    }

    /// Whether a located member cannot be read as whole bytes.
    fn is_bitfield(&self, total_bits: u64, found: &Found) -> bool {
        if !total_bits.is_multiple_of(8) {
            return true;
        }
        if found.bitfield_size != 0 {
            // A "bitfield" exactly as wide as its type is an ordinary member.
            return self.type_size(found.type_id).map_or(true, |size| {
                u64::from(size) * 8 != u64::from(found.bitfield_size)
            });
        }
        // Without kind_flag, a bitfield is an INT whose encoding says so.
        match self.resolve(found.type_id) {
            Ok((_, t)) if t.kind == Kind::Int => {
                let bits = t.a & 0xff;
                let bit_offset = (t.a >> 16) & 0xff;
                bit_offset != 0 || u64::from(bits) != u64::from(t.size_or_type) * 8
            }
            _ => false,
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, BtfError> {
    std::fs::read(path).map_err(|source| BtfError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn index(n: usize) -> Result<u32, BtfError> {
    u32::try_from(n).map_err(|_| malformed("too many types"))
}

/// Hand-written BTF blobs for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    /// Whether the running kernel's BTF is there for a test that reads it. Under `CI=true`
    /// (the CI machines have it) a missing file fails the test instead of skipping it.
    pub(crate) fn have_vmlinux(test: &str) -> bool {
        let path = std::path::Path::new(super::Btf::VMLINUX);
        if path.exists() {
            return true;
        }
        let msg = format!("{test}: {} does not exist", path.display());
        if std::env::var("CI").is_ok_and(|ci| ci == "true" || ci == "1") {
            panic!("{msg}: kernel BTF tests must run in CI");
        }
        eprintln!("SKIPPED {msg}");
        false
    }

    /// Serialises BTF types; ids are handed out in order starting at 1.
    pub(crate) struct BtfBuilder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
        /// String offsets are shifted by this (split BTF: the base's string section length).
        str_base: u32,
    }

    pub(crate) const INT: u32 = 1;
    pub(crate) const PTR: u32 = 2;
    pub(crate) const ARRAY: u32 = 3;
    pub(crate) const STRUCT: u32 = 4;
    pub(crate) const UNION: u32 = 5;
    pub(crate) const ENUM: u32 = 6;
    pub(crate) const FWD: u32 = 7;
    pub(crate) const TYPEDEF: u32 = 8;
    pub(crate) const VOLATILE: u32 = 9;
    pub(crate) const CONST: u32 = 10;
    pub(crate) const FUNC: u32 = 12;
    pub(crate) const FUNC_PROTO: u32 = 13;
    pub(crate) const VAR: u32 = 14;
    pub(crate) const DATASEC: u32 = 15;
    pub(crate) const DECL_TAG: u32 = 17;
    pub(crate) const TYPE_TAG: u32 = 18;
    pub(crate) const ENUM64: u32 = 19;

    impl BtfBuilder {
        pub(crate) fn new() -> Self {
            BtfBuilder {
                types: Vec::new(),
                strings: vec![0],
                next_id: 1,
                str_base: 0,
            }
        }

        /// A builder for split BTF on top of a base with `base_types` types and a string
        /// section of `base_str_len` bytes.
        pub(crate) fn split(base_types: u32, base_str_len: u32) -> Self {
            BtfBuilder {
                types: Vec::new(),
                strings: Vec::new(),
                next_id: base_types + 1,
                str_base: base_str_len,
            }
        }

        pub(crate) fn string(&mut self, s: &str) -> u32 {
            if s.is_empty() && self.str_base == 0 {
                return 0;
            }
            let off = self.strings.len() as u32 + self.str_base;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        /// A raw record: header words then trailing words.
        pub(crate) fn raw(
            &mut self,
            name: &str,
            kind: u32,
            kflag: bool,
            vlen: u32,
            size_or_type: u32,
            extra: &[u32],
        ) -> u32 {
            let name_off = self.string(name);
            let info = (u32::from(kflag) << 31) | (kind << 24) | vlen;
            for w in [name_off, info, size_or_type].iter().chain(extra) {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
            self.next_id += 1;
            self.next_id - 1
        }

        pub(crate) fn int(&mut self, name: &str, size: u32) -> u32 {
            self.raw(name, INT, false, 0, size, &[size * 8])
        }

        /// An INT with an explicit bit count (an old-style bitfield type).
        pub(crate) fn int_bits(&mut self, name: &str, size: u32, bits: u32) -> u32 {
            self.raw(name, INT, false, 0, size, &[bits])
        }

        pub(crate) fn ptr(&mut self, target: u32) -> u32 {
            self.raw("", PTR, false, 0, target, &[])
        }

        pub(crate) fn alias(&mut self, kind: u32, name: &str, target: u32) -> u32 {
            self.raw(name, kind, false, 0, target, &[])
        }

        pub(crate) fn array(&mut self, elem: u32, index: u32, n: u32) -> u32 {
            self.raw("", ARRAY, false, 0, 0, &[elem, index, n])
        }

        /// A struct or union; members are (name, type, bit offset).
        pub(crate) fn composite(
            &mut self,
            kind: u32,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32)],
        ) -> u32 {
            let mut extra = Vec::new();
            for &(m, ty, bits) in members {
                extra.extend([self.string(m), ty, bits]);
            }
            self.raw(name, kind, false, members.len() as u32, size, &extra)
        }

        pub(crate) fn struct_(
            &mut self,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32)],
        ) -> u32 {
            self.composite(STRUCT, name, size, members)
        }

        /// A kind_flag struct; members are (name, type, bit offset, bitfield size).
        pub(crate) fn struct_kflag(
            &mut self,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32, u32)],
        ) -> u32 {
            let mut extra = Vec::new();
            for &(m, ty, bits, bf) in members {
                extra.extend([self.string(m), ty, (bf << 24) | bits]);
            }
            self.raw(name, STRUCT, true, members.len() as u32, size, &extra)
        }

        pub(crate) fn enum_(&mut self, name: &str, signed: bool, values: &[(&str, i32)]) -> u32 {
            let mut extra = Vec::new();
            for &(v, val) in values {
                extra.extend([self.string(v), val as u32]);
            }
            self.raw(name, ENUM, signed, values.len() as u32, 4, &extra)
        }

        pub(crate) fn enum64(&mut self, name: &str, signed: bool, values: &[(&str, i64)]) -> u32 {
            let mut extra = Vec::new();
            for &(v, val) in values {
                extra.extend([self.string(v), val as u64 as u32, (val as u64 >> 32) as u32]);
            }
            self.raw(name, ENUM64, signed, values.len() as u32, 8, &extra)
        }

        pub(crate) fn func(&mut self, name: &str, ret: u32, params: &[(&str, u32)]) -> u32 {
            let mut extra = Vec::new();
            for &(p, ty) in params {
                extra.extend([self.string(p), ty]);
            }
            let proto = self.raw("", FUNC_PROTO, false, params.len() as u32, ret, &extra);
            self.raw(name, FUNC, false, 1, proto, &[])
        }

        /// The serialised blob.
        pub(crate) fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&0xeb9f_u16.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            let words = [
                24,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ];
            for w in words {
                out.extend_from_slice(&w.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }

        pub(crate) fn next_id(&self) -> u32 {
            self.next_id
        }

        pub(crate) fn strings_len(&self) -> u32 {
            self.strings.len() as u32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    /// A small "kernel": qstr-like struct behind an anonymous union, typedef chains, bitfields,
    /// enums, functions and every kind of trailing data.
    fn sample() -> BtfBuilder {
        let mut b = BtfBuilder::new();
        let u32_ = b.int("unsigned int", 4);
        let u64_ = b.int("long long unsigned int", 8);
        let ulong = b.int("long unsigned int", 8);
        let uchar = b.int("unsigned char", 1);
        let cuchar = b.alias(CONST, "", uchar);
        let name_ptr = b.ptr(cuchar);
        // struct qstr { union { struct { u32 hash; u32 len; }; u64 hash_len; }; const u8 *name; }
        let hl = b.struct_("", 8, &[("hash", u32_, 0), ("len", u32_, 32)]);
        let un = b.composite(UNION, "", 8, &[("", hl, 0), ("hash_len", u64_, 0)]);
        let qstr = b.struct_("qstr", 16, &[("", un, 0), ("name", name_ptr, 64)]);
        let cqstr = b.alias(CONST, "", qstr);
        // struct dentry { u32 d_flags; struct dentry *d_parent;
        //                 union { struct qstr __d_name; const struct qstr d_name; }; }
        let fwd_dentry = b.raw("dentry", FWD, false, 0, 0, &[]);
        let dptr = b.ptr(fwd_dentry);
        let dn = b.composite(
            UNION,
            "",
            16,
            &[("__d_name", qstr, 0), ("d_name", cqstr, 0)],
        );
        b.struct_(
            "dentry",
            40,
            &[("d_flags", u32_, 0), ("d_parent", dptr, 64), ("", dn, 128)],
        );
        // A typedef chain: typedef volatile const struct inner t2; typedef t2 t1;
        let inner = b.struct_("inner", 16, &[("x", u32_, 0), ("y", ulong, 64)]);
        let c = b.alias(CONST, "", inner);
        let v = b.alias(VOLATILE, "", c);
        let tag = b.alias(TYPE_TAG, "rcu", v);
        let t2 = b.alias(TYPEDEF, "t2", tag);
        let t1 = b.alias(TYPEDEF, "t1", t2);
        let t1_int = b.alias(TYPEDEF, "myint", u32_);
        let arr = b.array(u32_, u32_, 6);
        b.struct_(
            "outer",
            64,
            &[
                ("a", t1_int, 0),
                ("embedded", t1, 64),
                ("arr", arr, 192),
                ("p", dptr, 384),
            ],
        );
        // Bitfields: kind_flag struct and old-style INT encoding.
        b.struct_kflag(
            "bits",
            16,
            &[
                ("flags", u32_, 0, 3),
                ("more", u32_, 3, 5),
                ("wide", u32_, 32, 32),
                ("odd", u32_, 64, 8),
            ],
        );
        let bits3 = b.int_bits("unsigned int", 4, 3);
        b.struct_("oldbits", 8, &[("f", bits3, 0), ("g", u32_, 32)]);
        // Enums.
        b.enum_(
            "cgroup_subsys_id",
            false,
            &[("cpuset_cgrp_id", 0), ("memory_cgrp_id", 4)],
        );
        b.enum_("signed_enum", true, &[("minus", -2)]);
        b.enum64("big", false, &[("huge", 1 << 40)]);
        let anon = b.enum_("", false, &[("ANON", 9)]);
        b.alias(TYPEDEF, "anon_t", anon);
        // Functions and other kinds with trailing data.
        b.func("security_file_open", u32_, &[("file", dptr)]);
        let var = b.raw("some_var", VAR, false, 0, u32_, &[1]);
        b.raw(".data", DATASEC, false, 1, 4, &[var, 0, 4]);
        b.raw("tag", DECL_TAG, false, 0, var, &[u32::MAX]);
        // Same name twice: a forward, an empty struct, then the real one.
        b.raw("task", FWD, false, 0, 0, &[]);
        b.struct_("task", 0, &[]);
        b.struct_("task", 8, &[("pid", u32_, 0), ("tgid", u32_, 32)]);
        // Two different structs of the same name: the member is found in the second.
        b.struct_("dup", 4, &[("first", u32_, 0)]);
        b.struct_("dup", 8, &[("pad", u32_, 0), ("second", u32_, 32)]);
        b
    }

    fn parsed() -> Btf {
        Btf::from_bytes(sample().build()).expect("sample BTF parses")
    }

    #[test]
    fn nested_anonymous_members() {
        let btf = parsed();
        assert_eq!(btf.member_offset("qstr", &["len"]).unwrap(), 4);
        assert_eq!(btf.member_offset("qstr", &["hash_len"]).unwrap(), 0);
        assert_eq!(btf.member_offset("qstr", &["name"]).unwrap(), 8);
        assert_eq!(btf.member_offset("dentry", &["d_parent"]).unwrap(), 8);
        assert_eq!(btf.member_offset("dentry", &["d_name"]).unwrap(), 16);
        assert_eq!(
            btf.member_offset("dentry", &["d_name", "name"]).unwrap(),
            24
        );
        assert_eq!(btf.member_offset("dentry", &["d_name", "len"]).unwrap(), 20);
        assert_eq!(btf.member_size("dentry", &["d_name", "len"]).unwrap(), 4);
        assert_eq!(btf.member_size("dentry", &["d_name", "name"]).unwrap(), 8);
        assert_eq!(btf.member_size("dentry", &["d_name"]).unwrap(), 16);
        let info = btf.member("dentry", &["d_name", "name"]).unwrap();
        assert_eq!(
            info,
            MemberInfo {
                offset: 24,
                size: 8,
                kind: Kind::Ptr
            }
        );
        assert_eq!(btf.member_offset("dentry", &[]).unwrap(), 0);
    }

    #[test]
    fn typedef_chains_and_sizes() {
        let btf = parsed();
        assert_eq!(btf.member_offset("outer", &["embedded", "y"]).unwrap(), 16);
        assert_eq!(btf.member_size("outer", &["embedded", "y"]).unwrap(), 8);
        assert_eq!(btf.member_size("outer", &["embedded"]).unwrap(), 16);
        assert_eq!(btf.member_size("outer", &["a"]).unwrap(), 4);
        assert_eq!(btf.member_size("outer", &["arr"]).unwrap(), 24);
        assert_eq!(btf.member_offset("outer", &["arr"]).unwrap(), 24);
        // A typedef naming a struct can be looked up, has_type is for structs/unions only.
        assert_eq!(btf.member_offset("t1", &["y"]).unwrap(), 8);
        assert!(!btf.has_type("t1"));
        assert!(btf.has_type("outer") && btf.has_type("qstr") && !btf.has_type("nope"));
        // Pointers are not followed.
        let err = btf.member_offset("outer", &["p", "d_parent"]).unwrap_err();
        assert!(matches!(err, BtfError::NotComposite { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "member `p` of `outer` is not a struct or union; cannot look inside it"
        );
        let err = btf.member_offset("outer", &["a", "x"]).unwrap_err();
        assert!(matches!(err, BtfError::NotComposite { .. }), "{err}");
    }

    #[test]
    fn missing_things_are_named() {
        let btf = parsed();
        let err = btf.member_offset("nope", &["x"]).unwrap_err();
        assert!(matches!(&err, BtfError::NoSuchType(t) if t == "nope"));
        assert_eq!(err.to_string(), "BTF has no type named `nope`");
        let err = btf
            .member_offset("dentry", &["d_name", "missing"])
            .unwrap_err();
        match &err {
            BtfError::NoSuchMember { ty, member } => {
                assert_eq!((ty.as_str(), member.as_str()), ("dentry.d_name", "missing"));
            }
            other => panic!("unexpected {other}"),
        }
        assert_eq!(err.to_string(), "`dentry.d_name` has no member `missing`");
        // Anonymous members have no name to look up.
        assert!(btf.member_offset("qstr", &[""]).is_err());
    }

    #[test]
    fn bitfields_are_rejected() {
        let btf = parsed();
        for member in ["flags", "more", "odd"] {
            let err = btf.member_offset("bits", &[member]).unwrap_err();
            assert!(
                matches!(&err, BtfError::Bitfield { ty, member: m } if ty == "bits" && m == member),
                "{err}"
            );
            assert!(btf.member_size("bits", &[member]).is_err());
        }
        assert_eq!(
            btf.member_offset("bits", &["flags"])
                .unwrap_err()
                .to_string(),
            "member `flags` of `bits` is a bitfield, it has no byte offset"
        );
        // A full-width "bitfield" is a plain member.
        assert_eq!(btf.member_offset("bits", &["wide"]).unwrap(), 4);
        let err = btf.member_offset("oldbits", &["f"]).unwrap_err();
        assert!(matches!(err, BtfError::Bitfield { .. }), "{err}");
        assert_eq!(btf.member_offset("oldbits", &["g"]).unwrap(), 4);
    }

    #[test]
    fn enums() {
        let btf = parsed();
        assert_eq!(
            btf.enum_value("cgroup_subsys_id", "memory_cgrp_id")
                .unwrap(),
            4
        );
        assert_eq!(
            btf.enum_value("cgroup_subsys_id", "cpuset_cgrp_id")
                .unwrap(),
            0
        );
        assert_eq!(btf.enum_value("signed_enum", "minus").unwrap(), -2);
        assert_eq!(btf.enum_value("big", "huge").unwrap(), 1 << 40);
        assert_eq!(btf.enum_value("anon_t", "ANON").unwrap(), 9);
        let err = btf
            .enum_value("cgroup_subsys_id", "nope_cgrp_id")
            .unwrap_err();
        assert!(matches!(err, BtfError::NoSuchEnumValue { .. }));
        assert_eq!(
            err.to_string(),
            "enum `cgroup_subsys_id` has no value `nope_cgrp_id`"
        );
        assert!(matches!(
            btf.enum_value("nope", "x"),
            Err(BtfError::NoSuchType(_))
        ));
    }

    #[test]
    fn functions_and_duplicates() {
        let btf = parsed();
        assert!(btf.has_function("security_file_open"));
        assert!(!btf.has_function("dentry"));
        assert!(!btf.has_function("nope"));
        assert_eq!(btf.member_offset("task", &["tgid"]).unwrap(), 4);
        assert_eq!(btf.member_offset("dup", &["second"]).unwrap(), 4);
        assert_eq!(btf.member_offset("dup", &["first"]).unwrap(), 0);
        // The error of the first candidate is reported.
        assert!(matches!(
            btf.member_offset("dup", &["third"]),
            Err(BtfError::NoSuchMember { .. })
        ));
    }

    #[test]
    fn split_btf() {
        let base_builder = sample();
        let base = Btf::from_bytes(base_builder.build()).unwrap();
        let mut b = BtfBuilder::split(base_builder.next_id() - 1, base_builder.strings_len());
        // Refers to base type 1 ("unsigned int") and to its own types.
        let own = b.struct_("ovl_entry", 4, &[("n", 1, 0)]);
        let p = b.ptr(own);
        b.struct_(
            "ovl_inode",
            24,
            &[
                ("vfs_inode", 1, 0),
                ("__upperdentry", p, 64),
                ("oe", p, 128),
            ],
        );
        b.func("ovl_open", 1, &[]);
        let merged = Btf::from_split_bytes(&base, b.build()).unwrap();
        assert_eq!(
            merged
                .member_offset("ovl_inode", &["__upperdentry"])
                .unwrap(),
            8
        );
        assert_eq!(merged.member_size("ovl_inode", &["vfs_inode"]).unwrap(), 4);
        assert!(merged.has_function("ovl_open") && merged.has_function("security_file_open"));
        assert_eq!(
            merged.member_offset("dentry", &["d_name", "len"]).unwrap(),
            20
        );
        assert!(!base.has_type("ovl_inode"));
        assert!(Btf::from_split_bytes(&merged, b.build()).is_err());
    }

    #[test]
    fn bad_headers() {
        let good = sample().build();
        let mut be = good.clone();
        be[0..2].copy_from_slice(&[0xeb, 0x9f]);
        let err = Btf::from_bytes(be).unwrap_err();
        assert!(err.to_string().contains("big-endian"), "{err}");
        let mut v2 = good.clone();
        v2[2] = 2;
        assert!(
            Btf::from_bytes(v2)
                .unwrap_err()
                .to_string()
                .contains("version")
        );
        assert!(Btf::from_bytes(Vec::new()).is_err());
        assert!(Btf::from_bytes(b"hello world, this is not BTF at all".to_vec()).is_err());
        let mut unknown_kind = BtfBuilder::new();
        unknown_kind.raw("x", 31, false, 0, 0, &[]);
        let err = Btf::from_bytes(unknown_kind.build()).unwrap_err();
        assert!(err.to_string().contains("unknown kind 31"), "{err}");
        assert!(matches!(
            Btf::from_file(Path::new("/nonexistent/btf")),
            Err(BtfError::Io { .. })
        ));
    }

    /// Every lookup on a possibly-corrupt blob; must not panic.
    fn exercise(btf: &Btf) {
        for (ty, path) in [
            ("dentry", &["d_name", "len"][..]),
            ("outer", &["embedded", "y"]),
            ("outer", &["arr"]),
            ("bits", &["wide"]),
            ("task", &["tgid"]),
            ("t1", &["x"]),
        ] {
            let _ = btf.member_offset(ty, path);
            let _ = btf.member_size(ty, path);
            let _ = btf.member(ty, path);
        }
        let _ = btf.enum_value("cgroup_subsys_id", "memory_cgrp_id");
        let _ = btf.enum_value("anon_t", "ANON");
        let _ = btf.has_function("security_file_open");
        let _ = btf.has_type("qstr");
    }

    #[test]
    fn truncated_input_is_an_error() {
        let good = sample().build();
        for len in 0..good.len() {
            assert!(
                Btf::from_bytes(good[..len].to_vec()).is_err(),
                "truncated to {len}"
            );
        }
    }

    #[test]
    fn garbage_never_panics() {
        let good = sample().build();
        // Every byte replaced by a few values.
        for i in 0..good.len() {
            for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] = v;
                if let Ok(btf) = Btf::from_bytes(bad) {
                    exercise(&btf);
                }
            }
        }
        // Random blobs behind a valid header, and random blobs.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..2000 {
            let len = (next() % 400) as usize;
            let mut blob: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 2 == 0 && blob.len() >= 24 {
                let body = (blob.len() - 24) as u32;
                let split = (next() as u32) % (body + 1);
                blob[..24].copy_from_slice(&[0; 24]);
                blob[0..4].copy_from_slice(&[0x9f, 0xeb, 1, 0]);
                for (i, w) in [24u32, 0, split, split, body - split]
                    .into_iter()
                    .enumerate()
                {
                    blob[4 + 4 * i..8 + 4 * i].copy_from_slice(&w.to_le_bytes());
                }
            }
            if let Ok(btf) = Btf::from_bytes(blob) {
                exercise(&btf);
            }
        }
    }

    #[test]
    fn cycles_are_errors() {
        let mut b = BtfBuilder::new();
        let u32_ = b.int("unsigned int", 4);
        // typedef loop: ids 2 -> 3 -> 2.
        b.alias(TYPEDEF, "loop_a", 3);
        b.alias(TYPEDEF, "loop_b", 2);
        b.struct_("holder", 8, &[("l", 2, 0), ("x", u32_, 32)]);
        // A struct whose anonymous member is itself (id 6) and an array of itself (id 7).
        let me = b.next_id();
        b.struct_("selfish", 8, &[("", me, 0)]);
        let arr = b.next_id();
        b.array(arr, u32_, 2);
        b.struct_("arrays", 8, &[("a", arr, 0)]);
        b.struct_("dangling", 8, &[("d", 9999, 0)]);
        let btf = Btf::from_bytes(b.build()).unwrap();
        assert!(matches!(
            btf.member_size("holder", &["l"]),
            Err(BtfError::Malformed(_))
        ));
        assert_eq!(btf.member_offset("holder", &["x"]).unwrap(), 4);
        assert!(matches!(
            btf.member_offset("selfish", &["x"]),
            Err(BtfError::Malformed(_))
        ));
        assert!(matches!(
            btf.member_size("arrays", &["a"]),
            Err(BtfError::Malformed(_))
        ));
        assert_eq!(btf.member_offset("dangling", &["d"]).unwrap(), 0);
        assert!(matches!(
            btf.member_size("dangling", &["d"]),
            Err(BtfError::Malformed(_))
        ));
    }

    #[test]
    fn real_vmlinux() {
        if !testing::have_vmlinux("real_vmlinux") {
            return;
        }
        let path = Path::new(Btf::VMLINUX);
        let start = std::time::Instant::now();
        let btf = Btf::from_file(path).unwrap();
        eprintln!("parsed {btf:?} in {:?}", start.elapsed());
        assert!(btf.type_count() > 10_000);
        assert!(btf.has_type("task_struct"));
        assert!(btf.member_offset("task_struct", &["tgid"]).is_ok());
        assert!(btf.member_offset("task_struct", &["real_parent"]).is_ok());
        assert_eq!(btf.member_size("task_struct", &["tgid"]).unwrap(), 4);
        assert_eq!(btf.member_size("task_struct", &["real_parent"]).unwrap(), 8);
        assert_eq!(
            btf.member_offset("task_struct", &["tgid"]).unwrap(),
            btf.member_offset("task_struct", &["pid"]).unwrap() + 4
        );
        let name = btf.member_offset("dentry", &["d_name", "name"]).unwrap();
        let len = btf.member_offset("dentry", &["d_name", "len"]).unwrap();
        assert!(len < name && name - len <= 8);
        assert!(btf.member_offset("mnt_namespace", &["ns", "inum"]).is_ok());
        assert!(btf.member_offset("mm_struct", &["arg_start"]).unwrap() > 0);
        assert!(
            btf.member_offset("inode", &["__i_nlink"]).is_ok()
                || btf.member_offset("inode", &["i_nlink"]).is_ok()
        );
        assert!(btf.enum_value("cgroup_subsys_id", "memory_cgrp_id").is_ok());
        assert!(btf.has_function("security_file_open"));
        assert!(!btf.has_function("task_struct"));
        assert!(matches!(
            btf.member_offset("task_struct", &["no_such_member"]),
            Err(BtfError::NoSuchMember { .. })
        ));
    }
}
