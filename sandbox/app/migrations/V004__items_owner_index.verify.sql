SELECT coalesce(
    (SELECT indisvalid FROM pg_index
     WHERE indexrelid = to_regclass('items_owner_idx') AND indrelid = to_regclass('items')),
    false
);
