-- The billing host's own users, in the host's own schema (public); MFA keeps its tables in a
-- schema of its own (mfa) on the same database and pool.
CREATE TABLE users (
    email text PRIMARY KEY,
    password_hash text NOT NULL
);
CREATE TABLE invoices (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL REFERENCES users (email),
    amount_cents bigint NOT NULL
);
