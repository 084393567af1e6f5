-- Shares offered to an address that has no account yet: the owner's answer is the same as for any
-- share (no way to learn whether an address is registered), the address gets a sign-up
-- invitation, and once an account with the address exists the invitation becomes a pending share.
CREATE TABLE share_invitations (
    share_id TEXT PRIMARY KEY,
    did TEXT NOT NULL REFERENCES devices(did),
    owner_id TEXT NOT NULL REFERENCES users(user_id),
    email TEXT,
    phone TEXT,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX share_invitations_did ON share_invitations (did);
CREATE INDEX share_invitations_email ON share_invitations (email);
CREATE INDEX share_invitations_phone ON share_invitations (phone);
