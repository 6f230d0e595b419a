-- The revenue account a tenant's charges of a bucket go to: one of 64 shards per kind, by a hash of
-- the tenant, so that settles of different tenants do not queue on one revenue row.
-- Every call in the body is immutable (the shard is cast to text, not concatenated as an integer,
-- whose output function is only stable), so the planner inlines it into tf_write_batch's
-- expressions: called, it set up a SQL function in every transaction, about 0.05 ms each time.
CREATE FUNCTION tf_revenue_code(p_bucket TEXT, p_account TEXT) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'revenue:' || CASE p_bucket WHEN 'credit' THEN 'official' ELSE 'routed' END
           || ':' || (hashtext(p_account) & 63)::TEXT
$$;
