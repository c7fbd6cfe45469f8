-- Patient search by name (P2): the blind index of each word of a patient's given and family names
-- ("Anne-Marie van Dyke" gives anne, marie, van, dyke), so a search for any whole word of a name
-- finds the patient though the names themselves are sealed.
CREATE TABLE patient_name_words (
    patient_id TEXT NOT NULL REFERENCES patients (id),
    word_index TEXT NOT NULL,
    PRIMARY KEY (patient_id, word_index)
);

CREATE INDEX patient_name_words_word ON patient_name_words (word_index);
