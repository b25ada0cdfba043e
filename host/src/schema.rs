//! The signature of a TorchScript module's `forward`, read from the serialized file at
//! load time: which arguments it takes and of which types, so that a model the server
//! cannot call is refused at load with the reason instead of failing every request, a
//! request with the wrong number of inputs is the client's error, and scalar arguments
//! (`sr: int`, as audio models have) are served from one-element tensors.
//!
//! A `torch.jit.save` file is a zip: `<prefix>/data.pkl` pickles the module object (its
//! class named by the pickle's first global), `<prefix>/code/<module path>.py` holds
//! the class's TorchScript source, whose `def forward(self: …, x: Tensor, …) -> …:` is
//! the signature. A file that does not read this way (an unusual layout) gives no
//! signature, and the server passes tensors as it always did.

use std::io::Read as _;
use std::path::Path;

/// The type of one `forward` argument, as far as the server can pass it.
#[derive(Clone, Debug, PartialEq)]
pub enum ArgType {
    Tensor,
    /// `Optional[Tensor]`: a tensor is passed.
    OptionalTensor,
    Int,
    Float,
    Bool,
    /// Anything else (`str`, `List[…]`, `Dict[…]`, a class): its TorchScript spelling.
    Other(String),
}

impl ArgType {
    fn parse(text: &str) -> ArgType {
        match text.trim() {
            "Tensor" => ArgType::Tensor,
            "Optional[Tensor]" => ArgType::OptionalTensor,
            "int" => ArgType::Int,
            "float" => ArgType::Float,
            "bool" => ArgType::Bool,
            other => ArgType::Other(other.to_string()),
        }
    }

    /// Whether a request's tensor can be passed as this argument.
    pub fn servable(&self) -> bool {
        !matches!(self, ArgType::Other(_))
    }

    /// Whether the argument is a number passed from a one-element tensor.
    pub fn is_scalar(&self) -> bool {
        matches!(self, ArgType::Int | ArgType::Float | ArgType::Bool)
    }
}

/// One argument of `forward` after `self`.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: String,
    pub ty: ArgType,
    /// Whether it has a default value (it may then be left out).
    pub has_default: bool,
    /// How it is written in the source, for messages.
    pub spelled: String,
}

/// The arguments of `forward` after `self`.
#[derive(Clone, Debug, PartialEq)]
pub struct ForwardSchema {
    pub args: Vec<Arg>,
}

impl ForwardSchema {
    /// The fewest inputs a call may pass.
    pub fn required(&self) -> usize {
        self.args.iter().filter(|a| !a.has_default).count()
    }

    /// `forward(self, x: Tensor, sr: int)`, for messages.
    pub fn signature(&self) -> String {
        let args: Vec<&str> = self.args.iter().map(|a| a.spelled.as_str()).collect();
        format!("forward(self, {})", args.join(", "))
    }

    /// Why the server cannot call this `forward` with a request's tensors, if it
    /// cannot: an argument it has no way to pass and that has no default.
    pub fn unservable(&self) -> Option<String> {
        let bad: Vec<&str> = self
            .args
            .iter()
            .filter(|a| !a.ty.servable() && !a.has_default)
            .map(|a| a.spelled.as_str())
            .collect();
        (!bad.is_empty()).then(|| {
            format!(
                "its {} takes {}, which a handler cannot pass: handlers pass tensors \
                 (and int, float or bool arguments as one-element tensors); wrap the model \
                 in a module whose forward takes those",
                self.signature(),
                bad.join(", ")
            )
        })
    }
}

/// Reads the `forward` signature of the TorchScript file at `path`; `None` when the
/// file does not have the layout this reader knows.
pub fn read(path: &Path) -> Option<ForwardSchema> {
    let file = crate::fsutil::open_regular(path).ok()?;
    let mut zip = zip::ZipArchive::new(file).ok()?;
    let pkl_name = (0..zip.len()).find_map(|i| {
        let name = zip.name_for_index(i)?.ok()?.to_string();
        (name.ends_with("/data.pkl") && name.matches('/').count() == 1).then_some(name)
    })?;
    let prefix = pkl_name.strip_suffix("data.pkl")?.to_string();
    let pkl = read_member(&mut zip, &pkl_name, 1 << 16)?;
    let (module, class) = first_global(&pkl)?;
    let code_path = format!("{prefix}code/{}.py", module.replace('.', "/"));
    let code = String::from_utf8(read_member(&mut zip, &code_path, 64 << 20)?).ok()?;
    parse_forward(&code, &class)
}

/// Up to `limit` bytes of a zip member (the pickle's head is enough for its class).
fn read_member<R: std::io::Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    limit: u64,
) -> Option<Vec<u8>> {
    let member = zip.by_name(name).ok()?;
    let mut out = Vec::new();
    member.take(limit).read_to_end(&mut out).ok()?;
    Some(out)
}

/// The module and class of a pickle's first `GLOBAL` (protocol 2: `c<module>\n<name>\n`).
fn first_global(pkl: &[u8]) -> Option<(String, String)> {
    let start = pkl.iter().position(|&b| b == b'c')? + 1;
    let mut lines = pkl[start..].splitn(3, |&b| b == b'\n');
    let module = std::str::from_utf8(lines.next()?).ok()?;
    let class = std::str::from_utf8(lines.next()?).ok()?;
    module
        .starts_with("__torch__")
        .then(|| (module.to_string(), class.to_string()))
}

/// The arguments of `class`'s `forward` in TorchScript source `code`.
pub fn parse_forward(code: &str, class: &str) -> Option<ForwardSchema> {
    let class_at = code
        .match_indices(&format!("class {class}("))
        .map(|(i, _)| i)
        .find(|&i| i == 0 || code.as_bytes()[i - 1] == b'\n')?;
    let body = &code[class_at..];
    let def_at = body.find("def forward(")?;
    // The next class must not come before the method.
    if body[1..def_at].contains("\nclass ") {
        return None;
    }
    let after = &body[def_at + "def forward(".len()..];
    let close = matching_paren(after)?;
    let params = split_top_level(&after[..close]);
    let mut args = Vec::new();
    for (i, p) in params.iter().enumerate() {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        let (decl, default) = match p.split_once('=') {
            Some((d, _)) => (d.trim(), true),
            None => (p, false),
        };
        let (name, ty) = decl.split_once(':').unwrap_or((decl, "Tensor"));
        if i == 0 && name.trim() == "self" {
            continue;
        }
        args.push(Arg {
            name: name.trim().to_string(),
            ty: ArgType::parse(ty),
            has_default: default,
            spelled: p.split_whitespace().collect::<Vec<_>>().join(" "),
        });
    }
    Some(ForwardSchema { args })
}

/// The index of the `)` that closes the text's first unmatched `(`.
fn matching_paren(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' if depth == 0 => return Some(i),
            ')' | ']' | '}' => depth = depth.checked_sub(1)?,
            _ => {}
        }
    }
    None
}

/// Splits at commas outside brackets.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_as_torch_jit_save_writes_them() {
        let code = "class Other(Module):\n  def forward(self: __torch__.Other, a: str) -> Tensor:\n    pass\n\
                    class Model(Module):\n  __parameters__ = []\n  def forward(self: __torch__.Model,\n    x: Tensor,\n    sr: int,\n    \
                    w: Optional[Tensor]=None,\n    names: List[str]=[\"a\", \"b\"]) -> Tuple[Tensor, Tensor]:\n    return (x, x)\n";
        let s = parse_forward(code, "Model").unwrap();
        let names: Vec<&str> = s.args.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["x", "sr", "w", "names"]);
        assert_eq!(s.args[1].ty, ArgType::Int);
        assert_eq!(s.args[2].ty, ArgType::OptionalTensor);
        assert_eq!(s.args[3].ty, ArgType::Other("List[str]".into()));
        assert_eq!(s.required(), 2);
        assert!(s.unservable().is_none(), "the list has a default");
        let other = parse_forward(code, "Other").unwrap();
        let why = other.unservable().unwrap();
        assert!(why.contains("a: str"), "{why}");
    }

    #[test]
    fn the_shared_models_are_read() {
        let assets = std::env::var_os("WASMSERVE_ASSETS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/assets"));
        let dir = assets.join("models");
        for (file, arg) in [
            ("mobilenet_v2_quantized.pt", "X"),
            ("reddit_bytelstm.pt", "byte_input"),
            ("vit4mnist.ptl", "img"),
        ] {
            let s = read(&dir.join(file)).unwrap_or_else(|| panic!("{file}: no signature"));
            assert_eq!(s.args.len(), 1, "{file}: {s:?}");
            assert_eq!(
                (s.args[0].name.as_str(), &s.args[0].ty),
                (arg, &ArgType::Tensor)
            );
        }
    }
}
