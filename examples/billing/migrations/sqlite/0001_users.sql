-- The billing host's own users, in the host's own database file.
CREATE TABLE users (
    email TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL
);
CREATE TABLE invoices (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL REFERENCES users (email),
    amount_cents INTEGER NOT NULL
);
