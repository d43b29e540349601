-- Tenant passwords sealed with the catalog key (age X25519, `lifecycle::sealing`)
-- instead of kept in clear. `sealed_to` is the public key a value was sealed to, so
-- `landlord secrets rekey` finds what an older key sealed. Rows written by older
-- versions keep `password` in clear until `landlord secrets rekey` seals them.
ALTER TABLE tenant_credentials
    ADD COLUMN sealed    text,
    ADD COLUMN sealed_to text CHECK (sealed_to ~ '^age1[0-9a-z]{58}$'),
    ALTER COLUMN password DROP NOT NULL,
    ADD CONSTRAINT tenant_credentials_sealed_xor_clear
        CHECK ((password IS NULL) = (sealed IS NOT NULL) AND (sealed IS NULL) = (sealed_to IS NULL));
