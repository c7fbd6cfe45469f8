//! The medication catalogue that ships with RepeatRx: commonly repeated UK primary-care medicines,
//! each with its strength, form, pack size and controlled-drug schedule.
//!
//! The data lives in `data/medicines.csv` (header `code,name,strength,form,pack_size,schedule`,
//! plain comma-separated values, no quoting) and is compiled into the binary, so looking a
//! medicine up never touches the disk. [`Catalogue::parse`] validates every row and names the
//! offending line, and a unit test proves the shipped file parses.
//!
//! The schedule matters for ordering: Schedule 2 and 3 controlled drugs cannot be ordered through
//! an online repeat service (see [`ControlledSchedule::blocks_online_ordering`]).
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::OnceLock;
use thiserror::Error;

/// The catalogue file compiled into the binary.
const BUILTIN_CSV: &str = include_str!("../data/medicines.csv");

/// The exact header the catalogue CSV must start with.
const HEADER: [&str; COLUMNS] = ["code", "name", "strength", "form", "pack_size", "schedule"];
const COLUMNS: usize = 6;

/// Longest code accepted; codes are short slugs such as `atorvastatin-20mg-tab`.
const MAX_CODE_CHARS: usize = 64;
/// Longest name, strength or form accepted.
const MAX_TEXT_CHARS: usize = 120;

/// A medicine's schedule under the UK Misuse of Drugs Regulations 2001.
///
/// Schedule 1 (no medicinal use, e.g. raw cannabis, LSD) is deliberately absent: nothing in it can
/// be prescribed, so it can never appear in the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlledSchedule {
    None,
    Schedule2,
    Schedule3,
    Schedule4,
    Schedule5,
}

impl ControlledSchedule {
    /// Every value, in declaration order: handy for tests and for building forms.
    pub const ALL: [ControlledSchedule; 5] = [
        ControlledSchedule::None,
        ControlledSchedule::Schedule2,
        ControlledSchedule::Schedule3,
        ControlledSchedule::Schedule4,
        ControlledSchedule::Schedule5,
    ];

    /// Schedules 2 and 3 cannot be ordered through an online repeat service.
    pub fn blocks_online_ordering(self) -> bool {
        matches!(self, ControlledSchedule::Schedule2 | ControlledSchedule::Schedule3)
    }

    /// Whether the medicine is a controlled drug at all (any of Schedules 2 to 5).
    pub fn is_controlled(self) -> bool {
        self != ControlledSchedule::None
    }

    /// A human-readable label, e.g. "Schedule 2 controlled drug" or "Not controlled".
    pub fn label(self) -> &'static str {
        match self {
            ControlledSchedule::None => "Not controlled",
            ControlledSchedule::Schedule2 => "Schedule 2 controlled drug",
            ControlledSchedule::Schedule3 => "Schedule 3 controlled drug",
            ControlledSchedule::Schedule4 => "Schedule 4 controlled drug",
            ControlledSchedule::Schedule5 => "Schedule 5 controlled drug",
        }
    }

    /// The schedule from its number as written in the catalogue file: 0 means not controlled;
    /// 2, 3, 4 and 5 are the schedules. Anything else (including 1) is `None`.
    pub fn from_number(n: u8) -> Option<ControlledSchedule> {
        match n {
            0 => Some(ControlledSchedule::None),
            2 => Some(ControlledSchedule::Schedule2),
            3 => Some(ControlledSchedule::Schedule3),
            4 => Some(ControlledSchedule::Schedule4),
            5 => Some(ControlledSchedule::Schedule5),
            _ => None,
        }
    }

    /// The inverse of [`ControlledSchedule::from_number`].
    pub fn number(self) -> u8 {
        match self {
            ControlledSchedule::None => 0,
            ControlledSchedule::Schedule2 => 2,
            ControlledSchedule::Schedule3 => 3,
            ControlledSchedule::Schedule4 => 4,
            ControlledSchedule::Schedule5 => 5,
        }
    }
}

/// One catalogue entry: a specific product (drug, strength, form) with its usual pack size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Medicine {
    /// Short stable slug, unique within the catalogue, e.g. `atorvastatin-20mg-tab`.
    pub code: String,
    /// Drug name, e.g. "Atorvastatin" or "Fostair (beclometasone/formoterol)".
    pub name: String,
    /// Strength, e.g. "20mg" or "100micrograms/dose".
    pub strength: String,
    /// Form (with container size where relevant), e.g. "tablets" or "eye drops 2.5ml".
    pub form: String,
    /// Units in the usual pack: tablets or capsules, patches, pens; 1 for a single inhaler,
    /// bottle, tube or tub.
    pub pack_size: u32,
    pub schedule: ControlledSchedule,
}

impl Medicine {
    /// The name a patient recognises: name, strength and form, e.g. "Atorvastatin 20mg tablets".
    pub fn display_name(&self) -> String {
        [self.name.as_str(), self.strength.as_str(), self.form.as_str()]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A validated list of medicines, with lookup by code and word search.
#[derive(Debug, Clone)]
pub struct Catalogue {
    medicines: Vec<Medicine>,
    by_code: HashMap<String, usize>,
    /// Per medicine, in the same order as `medicines`: lowercase text used by [`Catalogue::search`].
    keys: Vec<SearchKey>,
    /// Indices into `medicines`, sorted alphabetically by display name (then code).
    alphabetical: Vec<usize>,
}

#[derive(Debug, Clone)]
struct SearchKey {
    name: String,
    /// Name, strength and form, lowercase, separated by newlines so that no query word (which
    /// never contains whitespace) can match across two fields.
    haystack: String,
}

impl Catalogue {
    /// The catalogue compiled into the binary (parsed once from `data/medicines.csv` and cached).
    pub fn builtin() -> &'static Catalogue {
        static BUILTIN: OnceLock<Catalogue> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            // Provably infallible: the CSV is fixed at compile time and the unit test
            // `builtin_catalogue_parses_with_unique_codes` parses exactly this text, so a failure
            // here would be a build defect that the test suite has already caught.
            Catalogue::parse(BUILTIN_CSV).expect("built-in catalogue is valid")
        })
    }

    /// Parses CSV text with the header `code,name,strength,form,pack_size,schedule`.
    ///
    /// Fields are plain (no quoting, no commas inside values) and surrounding whitespace is
    /// ignored; blank lines are skipped and a UTF-8 byte-order mark is tolerated. Any malformed
    /// row, duplicate code, bad schedule or zero pack size is an error naming its (1-based) line.
    pub fn parse(csv: &str) -> Result<Catalogue, CatalogueError> {
        let csv = csv.strip_prefix('\u{feff}').unwrap_or(csv);
        let mut lines =
            csv.lines().enumerate().map(|(i, text)| (i + 1, text)).filter(|(_, text)| !text.trim().is_empty());

        match lines.next() {
            None => return Err(malformed(1, "the catalogue is empty: expected a header line")),
            Some((line, header)) => {
                let fields: Vec<&str> = header.split(',').map(str::trim).collect();
                if fields != HEADER {
                    return Err(malformed(line, format!("expected the header `{}`", HEADER.join(","))));
                }
            }
        }

        let mut medicines = Vec::new();
        let mut first_seen: HashMap<String, (usize, usize)> = HashMap::new();
        for (line, text) in lines {
            let medicine = parse_row(line, text)?;
            if let Some(&(_, first_line)) = first_seen.get(&medicine.code) {
                return Err(malformed(
                    line,
                    format!("duplicate code `{}` (first used on line {first_line})", medicine.code),
                ));
            }
            first_seen.insert(medicine.code.clone(), (medicines.len(), line));
            medicines.push(medicine);
        }

        let by_code = first_seen.into_iter().map(|(code, (index, _))| (code, index)).collect();
        Ok(Catalogue::from_validated(medicines, by_code))
    }

    fn from_validated(medicines: Vec<Medicine>, by_code: HashMap<String, usize>) -> Catalogue {
        let keys: Vec<SearchKey> = medicines
            .iter()
            .map(|m| SearchKey {
                name: m.name.to_lowercase(),
                haystack: format!("{}\n{}\n{}", m.name, m.strength, m.form).to_lowercase(),
            })
            .collect();
        let sort_keys: Vec<String> = medicines.iter().map(|m| m.display_name().to_lowercase()).collect();
        let mut alphabetical: Vec<usize> = (0..medicines.len()).collect();
        alphabetical
            .sort_by(|&a, &b| sort_keys[a].cmp(&sort_keys[b]).then_with(|| medicines[a].code.cmp(&medicines[b].code)));
        Catalogue { medicines, by_code, keys, alphabetical }
    }

    /// The medicine with exactly this code, if any.
    pub fn get(&self, code: &str) -> Option<&Medicine> {
        self.by_code.get(code).and_then(|&i| self.medicines.get(i))
    }

    /// Every medicine, in file order.
    pub fn all(&self) -> &[Medicine] {
        &self.medicines
    }

    pub fn len(&self) -> usize {
        self.medicines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.medicines.is_empty()
    }

    /// Case-insensitive search over name, strength and form. Every whitespace-separated query word
    /// must occur (as a substring) in one of those fields. Results whose name starts with the first
    /// query word come first; within each group they are alphabetical by display name
    /// (case-insensitively). At most `limit` results; an empty or blank query finds nothing.
    pub fn search(&self, query: &str, limit: usize) -> Vec<&Medicine> {
        let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
        let Some(first) = words.first() else {
            return Vec::new();
        };
        if limit == 0 {
            return Vec::new();
        }

        let mut prefix_matches = Vec::new();
        let mut other_matches = Vec::new();
        for &i in &self.alphabetical {
            let key = &self.keys[i];
            if !words.iter().all(|w| key.haystack.contains(w.as_str())) {
                continue;
            }
            if key.name.starts_with(first.as_str()) {
                prefix_matches.push(&self.medicines[i]);
                if prefix_matches.len() == limit {
                    break;
                }
            } else if other_matches.len() < limit {
                other_matches.push(&self.medicines[i]);
            }
        }

        prefix_matches.extend(other_matches);
        prefix_matches.truncate(limit);
        prefix_matches
    }
}

/// Why catalogue CSV text was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CatalogueError {
    #[error("line {line}: {problem}")]
    Malformed { line: usize, problem: String },
}

fn malformed(line: usize, problem: impl Into<String>) -> CatalogueError {
    CatalogueError::Malformed { line, problem: problem.into() }
}

fn parse_row(line: usize, text: &str) -> Result<Medicine, CatalogueError> {
    let fields: Vec<&str> = text.split(',').map(str::trim).collect();
    let [code, name, strength, form, pack_size, schedule] = fields[..] else {
        return Err(malformed(
            line,
            format!("expected {COLUMNS} comma-separated fields ({}), found {}", HEADER.join(","), fields.len()),
        ));
    };

    for (column, value) in HEADER.iter().zip([code, name, strength, form, pack_size, schedule]) {
        if value.contains('"') {
            return Err(malformed(line, format!("{column} must not contain quotes")));
        }
        if value.chars().any(char::is_control) {
            return Err(malformed(line, format!("{column} must not contain control characters")));
        }
    }

    if code.is_empty() {
        return Err(malformed(line, "code is required"));
    }
    if code.chars().count() > MAX_CODE_CHARS
        || !code.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(malformed(
            line,
            format!(
                "code `{}` must be at most {MAX_CODE_CHARS} lowercase letters, digits and hyphens",
                crate::text::clip(code, MAX_CODE_CHARS)
            ),
        ));
    }
    for (column, value, required) in [("name", name, true), ("strength", strength, false), ("form", form, true)] {
        if required && value.is_empty() {
            return Err(malformed(line, format!("{column} is required")));
        }
        if value.chars().count() > MAX_TEXT_CHARS {
            return Err(malformed(line, format!("{column} must be at most {MAX_TEXT_CHARS} characters")));
        }
    }

    let pack_size: u32 = pack_size.parse().map_err(|_| {
        malformed(line, format!("pack_size `{}` is not a whole number", crate::text::clip(pack_size, 20)))
    })?;
    if pack_size == 0 {
        return Err(malformed(line, "pack_size must be at least 1"));
    }

    let schedule = schedule.parse::<u8>().ok().and_then(ControlledSchedule::from_number).ok_or_else(|| {
        malformed(
            line,
            format!(
                "schedule `{}` is not valid: use 0 for not controlled, or 2, 3, 4 or 5",
                crate::text::clip(schedule, 20)
            ),
        )
    })?;

    Ok(Medicine {
        code: code.to_string(),
        name: name.to_string(),
        strength: strength.to_string(),
        form: form.to_string(),
        pack_size,
        schedule,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    const HEADER_LINE: &str = "code,name,strength,form,pack_size,schedule";

    fn csv(rows: &[&str]) -> String {
        let mut text = String::from(HEADER_LINE);
        for row in rows {
            text.push('\n');
            text.push_str(row);
        }
        text
    }

    fn error_line(result: Result<Catalogue, CatalogueError>) -> (usize, String) {
        match result {
            Ok(_) => panic!("expected a parse error"),
            Err(CatalogueError::Malformed { line, problem }) => (line, problem),
        }
    }

    fn codes(found: &[&Medicine]) -> Vec<String> {
        found.iter().map(|m| m.code.clone()).collect()
    }

    #[test]
    fn builtin_catalogue_parses_with_unique_codes() {
        let parsed = Catalogue::parse(BUILTIN_CSV).expect("shipped catalogue must parse");
        assert!(parsed.len() >= 150, "only {} medicines", parsed.len());
        let builtin = Catalogue::builtin();
        assert_eq!(builtin.len(), parsed.len());
        assert!(!builtin.is_empty());
        let unique: HashSet<&str> = builtin.all().iter().map(|m| m.code.as_str()).collect();
        assert_eq!(unique.len(), builtin.len());
        for m in builtin.all() {
            assert_eq!(builtin.get(&m.code), Some(m));
        }
        assert!(std::ptr::eq(builtin, Catalogue::builtin()), "parsed once and cached");
    }

    #[test]
    fn builtin_catalogue_covers_core_areas() {
        let builtin = Catalogue::builtin();
        for code in [
            "atorvastatin-20mg-tab",
            "ramipril-5mg-cap",
            "amlodipine-5mg-tab",
            "apixaban-5mg-tab",
            "aspirin-75mg-disp-tab",
            "metformin-500mg-tab",
            "insulin-glargine-lantus-solostar",
            "salbutamol-100mcg-inh",
            "fostair-100-6-inh",
            "levothyroxine-25mcg-tab",
            "levothyroxine-50mcg-tab",
            "levothyroxine-75mcg-tab",
            "levothyroxine-100mcg-tab",
            "sertraline-50mg-tab",
            "lithium-carbonate-priadel-400mg-tab",
            "omeprazole-20mg-cap",
            "tamsulosin-400mcg-mr-cap",
            "latanoprost-50mcg-ml-eye-drops",
            "levetiracetam-500mg-tab",
            "alendronic-acid-70mg-tab",
            "adcal-d3-chew-tab",
        ] {
            assert!(builtin.get(code).is_some(), "missing {code}");
        }
        assert!(builtin.get("no-such-medicine").is_none());
    }

    #[test]
    fn known_controlled_drugs_have_the_right_schedule() {
        let builtin = Catalogue::builtin();
        let expected = [
            ("morphine-mst-10mg-mr-tab", ControlledSchedule::Schedule2),
            ("oxycodone-5mg-cap", ControlledSchedule::Schedule2),
            ("methylphenidate-10mg-tab", ControlledSchedule::Schedule2),
            ("fentanyl-12mcg-patch", ControlledSchedule::Schedule2),
            ("buprenorphine-5mcg-7day-patch", ControlledSchedule::Schedule3),
            ("tramadol-50mg-cap", ControlledSchedule::Schedule3),
            ("pregabalin-75mg-cap", ControlledSchedule::Schedule3),
            ("gabapentin-300mg-cap", ControlledSchedule::Schedule3),
            ("temazepam-10mg-tab", ControlledSchedule::Schedule3),
            ("diazepam-5mg-tab", ControlledSchedule::Schedule4),
            ("zopiclone-7-5mg-tab", ControlledSchedule::Schedule4),
            ("testosterone-testogel-16-2mg-g-gel", ControlledSchedule::Schedule4),
            ("co-codamol-30-500-tab", ControlledSchedule::Schedule5),
            ("codeine-phosphate-30mg-tab", ControlledSchedule::Schedule5),
            ("morphine-oramorph-10mg-5ml-solution", ControlledSchedule::Schedule5),
            ("atorvastatin-20mg-tab", ControlledSchedule::None),
            ("paracetamol-500mg-tab", ControlledSchedule::None),
        ];
        for (code, schedule) in expected {
            let medicine = builtin.get(code).unwrap_or_else(|| panic!("missing {code}"));
            assert_eq!(medicine.schedule, schedule, "{code}");
        }
    }

    #[test]
    fn only_schedules_2_and_3_block_online_ordering() {
        assert!(ControlledSchedule::Schedule2.blocks_online_ordering());
        assert!(ControlledSchedule::Schedule3.blocks_online_ordering());
        assert!(!ControlledSchedule::Schedule4.blocks_online_ordering());
        assert!(!ControlledSchedule::Schedule5.blocks_online_ordering());
        assert!(!ControlledSchedule::None.blocks_online_ordering());

        let builtin = Catalogue::builtin();
        let blocked = |code: &str| builtin.get(code).map(|m| m.schedule.blocks_online_ordering());
        assert_eq!(blocked("oxycodone-5mg-cap"), Some(true));
        assert_eq!(blocked("pregabalin-75mg-cap"), Some(true));
        assert_eq!(blocked("zopiclone-7-5mg-tab"), Some(false));
        assert_eq!(blocked("co-codamol-30-500-tab"), Some(false));
        assert_eq!(blocked("amlodipine-5mg-tab"), Some(false));
    }

    #[test]
    fn schedule_numbers_and_labels() {
        for schedule in ControlledSchedule::ALL {
            assert_eq!(ControlledSchedule::from_number(schedule.number()), Some(schedule));
            assert_eq!(schedule.is_controlled(), schedule != ControlledSchedule::None);
        }
        for n in [1, 6, 7, 255] {
            assert_eq!(ControlledSchedule::from_number(n), None, "{n}");
        }
        assert_eq!(ControlledSchedule::None.label(), "Not controlled");
        assert_eq!(ControlledSchedule::Schedule2.label(), "Schedule 2 controlled drug");
        assert_eq!(ControlledSchedule::Schedule5.label(), "Schedule 5 controlled drug");
    }

    #[test]
    fn display_name_joins_name_strength_and_form() {
        let builtin = Catalogue::builtin();
        let atorvastatin = builtin.get("atorvastatin-20mg-tab").map(Medicine::display_name);
        assert_eq!(atorvastatin.as_deref(), Some("Atorvastatin 20mg tablets"));
        let cocodamol = builtin.get("co-codamol-30-500-tab").map(Medicine::display_name);
        assert_eq!(cocodamol.as_deref(), Some("Co-codamol 30mg/500mg tablets"));

        let no_strength = Catalogue::parse(&csv(&["gaviscon,Gaviscon Advance,,oral suspension 500ml,1,0"]))
            .expect("strength may be empty");
        assert_eq!(no_strength.all()[0].display_name(), "Gaviscon Advance oral suspension 500ml");
    }

    #[test]
    fn search_is_case_insensitive() {
        let builtin = Catalogue::builtin();
        let lower = codes(&builtin.search("atorvastatin", 50));
        assert!(lower.contains(&"atorvastatin-20mg-tab".to_string()));
        assert_eq!(codes(&builtin.search("ATORVASTATIN", 50)), lower);
        assert_eq!(codes(&builtin.search("AtOrVaStAtIn", 50)), lower);
        assert!(!builtin.search("FOSTAIR", 10).is_empty());
    }

    #[test]
    fn search_requires_every_word() {
        let builtin = Catalogue::builtin();
        let found = builtin.search("atorva 20", 10);
        assert_eq!(codes(&found), ["atorvastatin-20mg-tab"]);
        // Words may match different fields (name, strength, form) in any order.
        let found = builtin.search("capsules 20mg omeprazole", 10);
        assert_eq!(codes(&found), ["omeprazole-20mg-cap"]);
        assert!(builtin.search("atorvastatin capsules", 10).is_empty());
        assert!(builtin.search("zzzz", 10).is_empty());
    }

    #[test]
    fn search_ranks_name_prefix_first_then_alphabetical() {
        let catalogue = Catalogue::parse(&csv(&[
            "adcal,Adcal-D3,1.5g/400units,chewable tablets,112,0",
            "calcium,Calcium carbonate,1.25g,chewable tablets,100,0",
            "cal-b,Calcichew,500mg,chewable tablets,100,0",
            "other,Paracetamol,500mg,tablets,100,0",
        ]))
        .expect("valid");
        let found = catalogue.search("cal", 10);
        assert_eq!(codes(&found), ["cal-b", "calcium", "adcal"]);

        let builtin = Catalogue::builtin();
        let levo = codes(&builtin.search("levothyroxine", 10));
        assert_eq!(
            levo,
            [
                "levothyroxine-100mcg-tab",
                "levothyroxine-25mcg-tab",
                "levothyroxine-50mcg-tab",
                "levothyroxine-75mcg-tab"
            ]
        );
        // "beclometasone" is the start of Clenil's name but only part of Fostair's.
        let becl = builtin.search("beclometasone", 20);
        let first_non_prefix = becl.iter().position(|m| !m.name.to_lowercase().starts_with("beclometasone"));
        let first_non_prefix = first_non_prefix.expect("Fostair mentions beclometasone");
        assert!(first_non_prefix > 0);
        assert!(becl[first_non_prefix..].iter().all(|m| !m.name.to_lowercase().starts_with("beclometasone")));
    }

    #[test]
    fn search_respects_limit() {
        let builtin = Catalogue::builtin();
        let all_tablets = builtin.search("tablets", usize::MAX);
        assert!(all_tablets.len() > 20);
        let first_five = builtin.search("tablets", 5);
        assert_eq!(first_five, all_tablets[..5].to_vec());
        assert!(builtin.search("tablets", 0).is_empty());
    }

    #[test]
    fn empty_query_finds_nothing() {
        let builtin = Catalogue::builtin();
        assert!(builtin.search("", 10).is_empty());
        assert!(builtin.search("   \t ", 10).is_empty());
    }

    #[test]
    fn parse_error_names_line_for_wrong_column_count() {
        let (line, problem) = error_line(Catalogue::parse(&csv(&["a,A,1mg,tablets,28,0", "b,B,1mg,tablets,28"])));
        assert_eq!(line, 3);
        assert!(problem.contains("found 5"), "{problem}");

        let (line, _) = error_line(Catalogue::parse(&csv(&["c,Co-codamol,30mg,500mg,tablets,100,5"])));
        assert_eq!(line, 2);
    }

    #[test]
    fn parse_error_names_line_for_non_numeric_pack_size() {
        let (line, problem) =
            error_line(Catalogue::parse(&csv(&["a,A,1mg,tablets,28,0", "b,B,1mg,tablets,twenty-eight,0"])));
        assert_eq!(line, 3);
        assert!(problem.contains("pack_size"), "{problem}");
        for bad in ["-1", "2.5", "", "99999999999"] {
            let row = format!("b,B,1mg,tablets,{bad},0");
            assert_eq!(error_line(Catalogue::parse(&csv(&[&row]))).0, 2, "{bad}");
        }
    }

    #[test]
    fn parse_error_names_line_for_zero_pack_size() {
        let (line, problem) = error_line(Catalogue::parse(&csv(&["a,A,1mg,tablets,0,0"])));
        assert_eq!(line, 2);
        assert!(problem.contains("at least 1"), "{problem}");
    }

    #[test]
    fn parse_error_names_line_for_bad_schedule() {
        for bad in ["1", "7", "6", "-2", "two", ""] {
            let row = format!("a,A,1mg,tablets,28,{bad}");
            let (line, problem) = error_line(Catalogue::parse(&csv(&["ok,Ok,1mg,tablets,28,0", &row])));
            assert_eq!(line, 3, "{bad}");
            assert!(problem.contains("schedule"), "{problem}");
        }
    }

    #[test]
    fn parse_error_names_both_lines_for_duplicate_code() {
        let (line, problem) = error_line(Catalogue::parse(&csv(&[
            "a,A,1mg,tablets,28,0",
            "b,B,1mg,tablets,28,0",
            "a,A again,2mg,tablets,28,0",
        ])));
        assert_eq!(line, 4);
        assert!(problem.contains("duplicate code `a`") && problem.contains("line 2"), "{problem}");
    }

    #[test]
    fn parse_errors_for_header_quotes_and_bad_codes() {
        assert_eq!(error_line(Catalogue::parse("")).0, 1);
        assert_eq!(error_line(Catalogue::parse("code,name,strength,form,pack,schedule\n")).0, 1);
        assert_eq!(error_line(Catalogue::parse(&csv(&["\"a\",A,1mg,tablets,28,0"]))).0, 2);
        assert_eq!(error_line(Catalogue::parse(&csv(&["Has Space,A,1mg,tablets,28,0"]))).0, 2);
        assert_eq!(error_line(Catalogue::parse(&csv(&[",A,1mg,tablets,28,0"]))).0, 2);
        assert_eq!(error_line(Catalogue::parse(&csv(&["a,,1mg,tablets,28,0"]))).0, 2);
        assert_eq!(error_line(Catalogue::parse(&csv(&["a,A,1mg,,28,0"]))).0, 2);
        let message = Catalogue::parse(&csv(&["a,A,1mg,tablets,0,0"])).err().map(|e| e.to_string());
        assert_eq!(message.as_deref(), Some("line 2: pack_size must be at least 1"));
    }

    #[test]
    fn parse_tolerates_crlf_blank_lines_bom_and_spaces() {
        let text = "\u{feff}code,name,strength,form,pack_size,schedule\r\n\r\n a , A , 1mg , tablets , 28 , 4 \r\n\n";
        let catalogue = Catalogue::parse(text).expect("valid");
        assert_eq!(catalogue.len(), 1);
        let a = catalogue.get("a").expect("present");
        assert_eq!((a.name.as_str(), a.form.as_str(), a.pack_size), ("A", "tablets", 28));
        assert_eq!(a.schedule, ControlledSchedule::Schedule4);
        // Line numbers count blank lines, so they match what an editor shows.
        let (line, _) = error_line(Catalogue::parse(&format!("{HEADER_LINE}\n\n\nb,B,1mg,tablets,0,0")));
        assert_eq!(line, 4);
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in "\\PC{0,300}") {
            let _ = Catalogue::parse(&text);
            let _ = Catalogue::parse(&format!("{HEADER_LINE}\n{text}"));
        }

        #[test]
        fn search_never_exceeds_limit_and_every_result_matches(query in "[a-zA-Z0-9 /.-]{0,20}", limit in 0usize..40) {
            let found = Catalogue::builtin().search(&query, limit);
            prop_assert!(found.len() <= limit);
            let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
            for m in found {
                let text = format!("{} {} {}", m.name, m.strength, m.form).to_lowercase();
                prop_assert!(words.iter().all(|w| text.contains(w.as_str())));
            }
        }
    }
}
