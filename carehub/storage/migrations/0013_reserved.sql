-- Reserved: issue 16 gave number 13 to another branch. If that branch's 0013 is merged, delete this file.
SELECT 1;
