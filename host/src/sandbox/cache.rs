//! The on-disk cache of compiled components: wasmtime's precompiled form, keyed by the
//! component's SHA-256 and the engine's compatibility hash, written atomically once the
//! component passed its checks.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::component::Component;

use super::engine::{HandlerRuntime, RuntimeError};

impl HandlerRuntime {
    /// The compiled component, from the cache or compiled now; when compiled now and a
    /// cache is configured, also where to cache it and the bytes (the caller writes them
    /// once the component passed its checks).
    #[allow(clippy::type_complexity)]
    pub(super) fn load_component(
        &self,
        wasm: &[u8],
    ) -> Result<(Component, Option<(PathBuf, Vec<u8>)>), RuntimeError> {
        let Some(dir) = &self.cache_dir else {
            let component = Component::new(&self.engine, wasm)
                .map_err(|e| RuntimeError::NotAComponent(format!("{e:#}")))?;
            return Ok((component, None));
        };
        let path = dir.join(format!("{}.cwasm", self.cache_key(wasm)));
        if path.is_file() {
            // SAFETY: the cache holds only files this runtime wrote with
            // `Engine::precompile_component`, under a key that includes the engine's
            // compatibility hash; wasmtime checks the header again on load.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(c) => return Ok((c, None)),
                Err(e) => tracing::warn!("ignoring cached component {}: {e:#}", path.display()),
            }
        }
        let compiled = self
            .engine
            .precompile_component(wasm)
            .map_err(|e| RuntimeError::NotAComponent(format!("{e:#}")))?;
        // SAFETY: `compiled` was produced just now by this engine.
        let component = unsafe { Component::deserialize(&self.engine, &compiled) }
            .map_err(RuntimeError::from)?;
        Ok((component, Some((path, compiled))))
    }

    fn cache_key(&self, wasm: &[u8]) -> String {
        use sha2::Digest;
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        let digest = sha2::Sha256::digest(wasm);
        format!("{:x}-{:016x}", digest, engine_hash.finish())
    }
}

pub(super) fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::fs::write(tmp.path(), bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
