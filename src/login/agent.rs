//! A small reading of a `User-Agent` for people: "Chrome 131 on Windows". Enough to tell
//! a person on the phone which kind of browser asked for the login (confirm on the
//! phone); not a device database. Unknown agents read as "an unknown browser".

/// The browser and operating system `ua` names, for a person to read.
pub fn describe(ua: &str) -> String {
    let browser = browser(ua);
    match os(ua) {
        Some(os) => format!("{browser} on {os}"),
        None => browser,
    }
}

/// The major version after `token` (`Chrome/131.0.1` → `131`), if any.
fn version(ua: &str, token: &str) -> Option<String> {
    let rest = &ua[ua.find(token)? + token.len()..];
    let v: String = rest.chars().take_while(char::is_ascii_digit).take(4).collect();
    (!v.is_empty()).then_some(v)
}

fn browser(ua: &str) -> String {
    // Order matters: Edge, Opera, Samsung and WeChat also say "Chrome", Chrome also
    // says "Safari".
    const NAMED: &[(&str, &str)] = &[
        ("MicroMessenger/", "WeChat"),
        ("Edg/", "Edge"),
        ("EdgA/", "Edge"),
        ("OPR/", "Opera"),
        ("SamsungBrowser/", "Samsung Internet"),
        ("Firefox/", "Firefox"),
        ("FxiOS/", "Firefox"),
        ("CriOS/", "Chrome"),
        ("Chrome/", "Chrome"),
    ];
    for (token, name) in NAMED {
        if ua.contains(token) {
            return match version(ua, token) {
                Some(v) => format!("{name} {v}"),
                None => (*name).to_string(),
            };
        }
    }
    if ua.contains("Safari/") {
        return match version(ua, "Version/") {
            Some(v) => format!("Safari {v}"),
            None => "Safari".into(),
        };
    }
    for (token, name) in [("curl/", "curl"), ("python-requests/", "python-requests"), ("Wget/", "Wget")] {
        if ua.starts_with(token) {
            return name.into();
        }
    }
    "an unknown browser".into()
}

fn os(ua: &str) -> Option<&'static str> {
    const NAMED: &[(&str, &str)] = &[
        ("HarmonyOS", "HarmonyOS"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Android", "Android"),
        ("CrOS", "ChromeOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("Macintosh", "macOS"),
        ("Linux", "Linux"),
    ];
    NAMED.iter().find(|(token, _)| ua.contains(token)).map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn common_browsers_and_systems_are_named() {
        let cases = [
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                "Chrome 131 on Windows",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86",
                "Edge 131 on Windows",
            ),
            ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox 128 on Linux"),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
                "Safari 17 on macOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN",
                "WeChat 8 on iOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
                "Chrome 131 on Android",
            ),
            ("curl/8.5.0", "curl"),
            ("", "an unknown browser"),
        ];
        for (ua, want) in cases {
            assert_eq!(describe(ua), want, "{ua}");
        }
    }
}
