//! The few-shot benchmark's classes: concepts, not sources. The data's three sources each
//! group their images their own way (emoji subcategories, Tux Paint and Openclipart
//! folders), so the same concept appears under several names and some groups name a
//! source ("computer", "photo"). `assets/fewshot/concepts.tsv` maps each source's groups
//! onto one set of concept names by a rule written at its top: emoji by exact
//! subcategory, stamps and clip art by the longest listed folder that holds the file.

use anyhow::{bail, ensure, Context, Result};

use crate::data::Sample;

/// The shipped mapping (see the file's header for the rule).
pub const SHIPPED: &str = include_str!("../../assets/fewshot/concepts.tsv");

/// The fewest held-out images a concept needs to be a class.
pub const MIN_IMAGES: usize = 6;

pub struct Concepts {
    /// (package, subcategory or folder, concept).
    entries: Vec<(String, String, String)>,
}

impl Concepts {
    /// Reads a mapping: `package<TAB>subcategory or folder<TAB>concept` lines; blank
    /// lines and lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Result<Self> {
        let mut entries = Vec::new();
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
            let [package, key, concept] = fields[..] else {
                bail!("concept map line {}: expected 3 tab-separated fields, found {}", number + 1, fields.len());
            };
            ensure!(
                !package.is_empty() && !key.is_empty() && !concept.is_empty(),
                "concept map line {}: an empty field",
                number + 1
            );
            ensure!(
                !entries.iter().any(|(p, k, _): &(String, String, String)| p == package && k == key),
                "concept map line {}: {package} {key} is mapped twice",
                number + 1
            );
            entries.push((package.to_string(), key.to_string(), concept.to_string()));
        }
        ensure!(!entries.is_empty(), "the concept map is empty");
        Ok(Self { entries })
    }

    pub fn shipped() -> Self {
        Self::parse(SHIPPED).context("assets/fewshot/concepts.tsv").expect("the shipped concept map parses")
    }

    /// The concept an image shows, if its group is mapped.
    pub fn concept(&self, sample: &Sample) -> Option<&str> {
        let mine = self.entries.iter().filter(|(package, _, _)| *package == sample.package);
        match &sample.subcategory {
            Some(subcategory) => mine.filter(|(_, key, _)| key == subcategory).map(|(_, _, c)| c.as_str()).next(),
            None => {
                let folder = sample.file.rsplit_once('/').map_or("", |(folder, _)| folder);
                mine.filter(|(_, key, _)| folder == key || folder.starts_with(&format!("{key}/")))
                    .max_by_key(|(_, key, _)| key.len())
                    .map(|(_, _, c)| c.as_str())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(package: &str, file: &str, subcategory: Option<&str>) -> Sample {
        Sample {
            package: package.into(),
            file: file.into(),
            caption: None,
            name: String::new(),
            category: String::new(),
            subcategory: subcategory.map(str::to_string),
        }
    }

    #[test]
    fn the_longest_listed_folder_wins_and_emoji_match_exactly() {
        let map = Concepts::parse(
            "# a comment\nclip\tanimals\tanimal\nclip\tanimals/birds\tbird\nemoji\tanimal-bird\tbird\n",
        )
        .unwrap();
        assert_eq!(map.concept(&sample("clip", "animals/birds/owl/x.png", None)), Some("bird"));
        assert_eq!(map.concept(&sample("clip", "animals/cat.png", None)), Some("animal"));
        // A folder is matched whole: "animalsfoo" is not inside "animals".
        assert_eq!(map.concept(&sample("clip", "animalsfoo/x.png", None)), None);
        assert_eq!(map.concept(&sample("clip", "x.png", None)), None);
        assert_eq!(map.concept(&sample("emoji", "img/google/64/1f426.png", Some("animal-bird"))), Some("bird"));
        assert_eq!(map.concept(&sample("emoji", "img/google/64/1f426.png", Some("animal-birds"))), None);
        assert_eq!(map.concept(&sample("other", "animals/birds/x.png", None)), None);
    }

    #[test]
    fn a_broken_map_is_refused_with_its_line() {
        let error = Concepts::parse("clip\tanimals\n").err().unwrap().to_string();
        assert!(error.contains("line 1") && error.contains("3 tab-separated"), "{error}");
        let error = Concepts::parse("a\tb\tc\na\tb\td\n").err().unwrap().to_string();
        assert!(error.contains("line 2") && error.contains("twice"), "{error}");
        assert!(Concepts::parse("# only a comment\n").is_err());
    }

    #[test]
    fn the_shipped_map_names_each_source_s_groups() {
        let map = Concepts::shipped();
        let emoji = sample("emoji-datasource-google", "img/google/64/1f436.png", Some("animal-mammal"));
        assert_eq!(map.concept(&emoji), Some("mammal"));
        assert_eq!(map.concept(&sample("openclipart-png", "animals/mammals/bears/a.png", None)), Some("mammal"));
        assert_eq!(map.concept(&sample("tuxpaint-stamps-default", "animals/birds/b.png", None)), Some("bird"));
        assert_eq!(map.concept(&sample("openclipart-png", "computer/icons/flat-theme/action/c.png", None)), None);
        assert_eq!(map.concept(&sample("mate-backgrounds", "photo.jpg#crop-1", None)), None);
    }
}
