//! Vocabularies from outside a store (`inspect --vocab`): a Hugging Face `tokenizer.json`, a
//! `vocab.json` (token → id), or a `vocab.txt` (one token per line), read into one string per
//! token id. The strings are the tokenizer's own tokens (`Ġthe`), as harvest writes them.

use std::path::{Path, PathBuf};

/// A vocabulary file that cannot be read: one line naming it and what was expected.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct VocabError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong and what was expected.
    pub problem: String,
}

/// Read `path` into one string per token id (ids with no token get an empty string).
pub fn load(path: &Path) -> Result<Vec<String>, VocabError> {
    let fail = |problem: String| VocabError {
        path: path.into(),
        problem,
    };
    let text = crate::durable::check_regular(path)
        .and_then(|()| std::fs::read_to_string(path))
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    let is_json = path.extension().is_some_and(|e| e == "json");
    let pairs: Vec<(String, usize)> = if is_json {
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| fail(format!("not JSON: {e}")))?;
        from_json(&v).ok_or_else(|| {
            fail(
                "expected a tokenizer.json (model.vocab) or a vocab.json object of token → id"
                    .into(),
            )
        })?
    } else {
        text.lines()
            .enumerate()
            .map(|(i, l)| (l.to_string(), i))
            .collect()
    };
    if pairs.is_empty() {
        return Err(fail("no tokens".into()));
    }
    let n = pairs.iter().map(|(_, i)| i + 1).max().unwrap_or(0);
    if n > 16 * pairs.len() + 1024 {
        return Err(fail(format!(
            "token id {} for {} tokens: expected ids from 0 up",
            n - 1,
            pairs.len()
        )));
    }
    let mut out = vec![String::new(); n];
    for (t, i) in pairs {
        out[i] = t;
    }
    Ok(out)
}

/// Token/id pairs of a `tokenizer.json` (its model's vocab, an object or a Unigram list, and its
/// added tokens) or of a plain `{token: id}` object.
fn from_json(v: &serde_json::Value) -> Option<Vec<(String, usize)>> {
    let (vocab, added) = match v.get("model") {
        Some(m) => (m.get("vocab")?, v.get("added_tokens")),
        None => (v, None),
    };
    let mut out: Vec<(String, usize)> = match vocab {
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(t, i)| Some((t.clone(), i.as_u64()? as usize)))
            .collect::<Option<_>>()?,
        // Unigram: [[token, score], …] in id order
        serde_json::Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, e)| Some((e.get(0)?.as_str()?.to_string(), i)))
            .collect::<Option<_>>()?,
        _ => return None,
    };
    for a in added.and_then(|a| a.as_array()).into_iter().flatten() {
        if let (Some(id), Some(t)) = (a["id"].as_u64(), a["content"].as_str()) {
            out.push((t.to_string(), id as usize));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(name);
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    #[test]
    fn tokenizer_json_vocab_json_and_vocab_txt_read_by_id() {
        let (_d, p) = write(
            "tokenizer.json",
            r#"{"added_tokens":[{"id":3,"content":"<|endoftext|>"}],
                "model":{"type":"BPE","vocab":{"a":0,"Ġthe":2,"b":1}}}"#,
        );
        assert_eq!(load(&p).unwrap(), ["a", "b", "Ġthe", "<|endoftext|>"]);
        let (_d, p) = write(
            "tokenizer.json",
            r#"{"model":{"type":"Unigram","vocab":[["<unk>",0.0],["▁x",-1.5]]}}"#,
        );
        assert_eq!(load(&p).unwrap(), ["<unk>", "▁x"]);
        let (_d, p) = write("vocab.json", r#"{"x":1,"y":0}"#);
        assert_eq!(load(&p).unwrap(), ["y", "x"]);
        let (_d, p) = write("vocab.txt", "[PAD]\n[CLS]\nhello\n");
        assert_eq!(load(&p).unwrap(), ["[PAD]", "[CLS]", "hello"]);
    }

    #[test]
    fn what_is_not_a_vocabulary_is_one_line() {
        let (_d, p) = write("tokenizer.json", r#"{"model":{"vocab":3}}"#);
        let e = load(&p).unwrap_err().to_string();
        assert!(
            e.contains("tokenizer.json") && e.contains("model.vocab"),
            "{e}"
        );
        let (_d, p) = write("v.json", "{not json");
        assert!(load(&p).unwrap_err().to_string().contains("not JSON"));
        let e = load(Path::new("/nonexistent/vocab.txt")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/vocab.txt: cannot read"),
            "{e}"
        );
    }
}
