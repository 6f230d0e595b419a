-- Post one transfer (top-ups and adjustments; the hot path books its transfers in tf_write_batch).
-- The caller has already locked both accounts (in id order). The no-overdraft CHECK on
-- ledger_accounts refuses a debit the account cannot pay.
CREATE FUNCTION tf_post(p_debit BIGINT, p_credit BIGINT, p_amount BIGINT, p_kind TEXT,
                        p_account TEXT, p_bucket TEXT, p_hold BIGINT, p_receipt TEXT,
                        p_attempt INTEGER, p_run TEXT, p_reference TEXT, p_reason TEXT)
RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE v_id BIGINT; v_debit_after BIGINT; v_credit_after BIGINT;
BEGIN
    UPDATE ledger_accounts SET debits_posted = debits_posted + p_amount WHERE id = p_debit
    RETURNING credits_posted - debits_posted INTO v_debit_after;
    UPDATE ledger_accounts SET credits_posted = credits_posted + p_amount WHERE id = p_credit
    RETURNING credits_posted - debits_posted INTO v_credit_after;
    INSERT INTO transfers (debit_account_id, credit_account_id, amount, kind, account_id, bucket,
                           hold_id, receipt_id, attempt_no, run_id, reference, reason,
                           debit_balance_after, credit_balance_after)
    VALUES (p_debit, p_credit, p_amount, p_kind, p_account, p_bucket, p_hold, p_receipt,
            p_attempt, p_run, p_reference, p_reason, v_debit_after, v_credit_after)
    RETURNING id INTO v_id;
    RETURN v_id;
END $$;
