-- As SQLite's 0012: names are searched word by word (`patient_name_words`).
ALTER TABLE patients DROP COLUMN given_index;
ALTER TABLE patients DROP COLUMN family_index;
