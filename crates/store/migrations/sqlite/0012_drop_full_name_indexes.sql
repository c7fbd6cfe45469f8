-- Patient search compares the words of names (`patient_name_words`, 0011); the blind indexes of
-- whole given and family names are no longer read, so they are not kept either.
DROP INDEX patients_pharmacy_given;
DROP INDEX patients_pharmacy_family;
ALTER TABLE patients DROP COLUMN given_index;
ALTER TABLE patients DROP COLUMN family_index;
