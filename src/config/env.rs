//! `SCANLOGIN__SECTION__KEY` environment overrides, applied to the parsed TOML before
//! it is read into the model (`SCANLOGIN__WECHAT__APPS__0__APP_SECRET` reaches into the
//! app list).

/// An env value is read as a TOML value when it parses as one (numbers, booleans,
/// arrays), else as a plain string, so `SCANLOGIN__SERVER__BIND=0.0.0.0:9000` works
/// without quotes.
fn parse_env_value(raw: &str) -> toml::Value {
    let wrapped = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&wrapped) {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    }
}

pub(super) fn apply_override(root: &mut toml::Value, path: &[String], raw: &str) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key".into());
    };
    let mut cur = root;
    for seg in parents {
        cur = match cur {
            toml::Value::Table(t) => t.entry(seg.clone()).or_insert_with(|| toml::Value::Table(Default::default())),
            toml::Value::Array(a) => {
                let i: usize = seg.parse().map_err(|_| format!("`{seg}` is not an index"))?;
                if i > a.len() {
                    return Err(format!("index {i} is past the end of the list"));
                }
                if i == a.len() {
                    a.push(toml::Value::Table(Default::default()));
                }
                &mut a[i]
            }
            _ => return Err(format!("`{seg}` is inside a scalar")),
        };
    }
    let value = parse_env_value(raw);
    match cur {
        toml::Value::Table(t) => {
            // Keep a string a string when the file says so (e.g. a numeric-looking secret).
            let value = match (t.get(last), value) {
                (Some(toml::Value::String(_)), v) if !v.is_str() => toml::Value::String(raw.into()),
                (_, v) => v,
            };
            t.insert(last.clone(), value);
            Ok(())
        }
        _ => Err("parent is not a table".into()),
    }
}
