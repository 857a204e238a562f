//! Writing results: JSON to a temporary file next to the target, then renamed into place, so
//! a reader never sees half a file.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::error::BenchError;

/// Writes `value` as pretty JSON to `path` atomically (temp file, then rename).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), BenchError> {
    let io = |cause| BenchError::Io {
        path: path.to_path_buf(),
        cause,
    };
    let text = serde_json::to_string_pretty(value).map_err(|e| io(std::io::Error::other(e)))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "result.json".into());
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_json_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        write_json(&p, &serde_json::json!({"a": 1})).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["a"], 1);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let e = write_json(&dir.path().join("no/such/dir/r.json"), &1).unwrap_err();
        assert!(e.to_string().contains("no/such/dir/r.json"), "{e}");
    }
}
