-- Sample only: no real password lives in this tree.
SELECT 1;
