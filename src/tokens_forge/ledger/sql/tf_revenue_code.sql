-- The revenue account a tenant's charges of a bucket go to: one of 64 shards per kind, by a hash of
-- the tenant, so that settles of different tenants do not queue on one revenue row.
CREATE FUNCTION tf_revenue_code(p_bucket TEXT, p_account TEXT) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'revenue:' || CASE p_bucket WHEN 'credit' THEN 'official' ELSE 'routed' END
           || ':' || (hashtext(p_account) & 63)
$$;
