import { createTheme } from '@mui/material/styles';
import { tokens } from './generated/mui-theme.gen';

// The MUI theme from tokens.json: both colour schemes as CSS variables, switched by the `.dark` class on
// <html> that also switches the shadcn variables, so one toggle moves both libraries.
export const theme = createTheme({
  cssVariables: { colorSchemeSelector: 'class' },
  colorSchemes: tokens.colorSchemes,
  typography: {
    fontFamily: tokens.typography.fontFamily,
    fontWeightRegular: tokens.typography.fontWeightRegular,
    fontWeightBold: tokens.typography.fontWeightBold,
    body2: { fontSize: tokens.typography.fontSize.md, lineHeight: tokens.typography.lineHeight },
  },
  shape: { borderRadius: parseFloat(tokens.radius.md) * 16 },
  spacing: (factor: number) => `calc(${tokens.spacing} * ${factor * 2})`,
  transitions: { duration: { shortest: parseInt(tokens.motion.fast, 10), standard: parseInt(tokens.motion.normal, 10) } },
});
